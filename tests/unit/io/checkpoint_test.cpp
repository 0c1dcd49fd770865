#include <gtest/gtest.h>

#include "io/atomic_file.hpp"
#include "io/safetensors.hpp"
#include "io_test_support.hpp"

namespace axl {
namespace {

using test::expect_error;
using test::TempDir;

class CheckpointTest : public ::testing::Test {
protected:
    void write_shard(const std::string& name, const std::vector<std::string>& tensors) {
        std::vector<NamedTensor> named;
        for (const std::string& tensor : tensors) named.push_back({tensor, DType::F32, {2}, values_});
        write_safetensors(dir_.file(name), named, {});
    }
    void write_index(const std::string& weight_map) {
        write_file_atomic(dir_.file("model.safetensors.index.json"),
                          "{\"metadata\": {\"total_size\": 24}, \"weight_map\": " + weight_map + "}");
    }

    TempDir dir_;
    float values_[2] = {1.0f, 2.0f};
};

TEST_F(CheckpointTest, OpensASingleFile) {
    write_shard("model.safetensors", {"a", "b"});
    Checkpoint checkpoint(dir_.path());
    EXPECT_EQ(checkpoint.names(), (std::vector<std::string>{"a", "b"}));
    EXPECT_EQ(checkpoint.get("a").shape, (Shape{2}));
    EXPECT_EQ(checkpoint.find("c"), nullptr);
    expect_error([&] { checkpoint.get("c"); }, AXL_ERR_NOT_FOUND,
                 "tensor 'c' not found in checkpoint " + dir_.path());
}

TEST_F(CheckpointTest, OpensShardsListedByTheIndex) {
    write_shard("model-00001-of-00002.safetensors", {"embed", "layer.0"});
    write_shard("model-00002-of-00002.safetensors", {"layer.1", "head"});
    write_index(R"({"embed": "model-00001-of-00002.safetensors",
                    "layer.0": "model-00001-of-00002.safetensors",
                    "layer.1": "model-00002-of-00002.safetensors",
                    "head": "model-00002-of-00002.safetensors"})");
    Checkpoint checkpoint(dir_.path() + "/");
    EXPECT_EQ(checkpoint.names(), (std::vector<std::string>{"embed", "head", "layer.0", "layer.1"}));
    EXPECT_EQ(checkpoint.get("embed").file, dir_.file("model-00001-of-00002.safetensors"));
    EXPECT_EQ(checkpoint.get("head").file, dir_.file("model-00002-of-00002.safetensors"));
    EXPECT_EQ(static_cast<const float*>(checkpoint.get("layer.1").data)[1], 2.0f);
}

TEST_F(CheckpointTest, MissingCheckpointNamesBothFiles) {
    expect_error([&] { Checkpoint checkpoint(dir_.path()); }, AXL_ERR_NOT_FOUND, "neither");
    expect_error([&] { Checkpoint checkpoint(dir_.path()); }, AXL_ERR_NOT_FOUND,
                 dir_.file("model.safetensors"));
    expect_error([&] { Checkpoint checkpoint(dir_.file("no/such/dir")); }, AXL_ERR_NOT_FOUND,
                 "neither");
}

TEST_F(CheckpointTest, MissingShardIsNotFound) {
    write_shard("model-00001-of-00002.safetensors", {"a"});
    write_index(R"({"a": "model-00001-of-00002.safetensors",
                    "b": "model-00002-of-00002.safetensors"})");
    expect_error([&] { Checkpoint checkpoint(dir_.path()); }, AXL_ERR_NOT_FOUND,
                 "model-00002-of-00002.safetensors");
    expect_error([&] { Checkpoint checkpoint(dir_.path()); }, AXL_ERR_NOT_FOUND,
                 "model.safetensors.index.json");
}

TEST_F(CheckpointTest, TensorMissingFromItsShardIsAFormatError) {
    write_shard("shard1.safetensors", {"a"});
    write_shard("shard2.safetensors", {"b"});
    write_index(R"({"a": "shard1.safetensors", "b": "shard1.safetensors"})");
    expect_error([&] { Checkpoint checkpoint(dir_.path()); }, AXL_ERR_FORMAT,
                 "maps tensor 'b' to shard shard1.safetensors, but that shard does not contain it");
}

TEST_F(CheckpointTest, RejectsMalformedIndex) {
    write_index("[]");
    expect_error([&] { Checkpoint checkpoint(dir_.path()); }, AXL_ERR_FORMAT, "weight_map");
    write_index(R"({"a": 3})");
    expect_error([&] { Checkpoint checkpoint(dir_.path()); }, AXL_ERR_FORMAT, "'a'");
    write_index(R"({"a": "../elsewhere.safetensors"})");
    expect_error([&] { Checkpoint checkpoint(dir_.path()); }, AXL_ERR_FORMAT, "invalid shard file");
    write_index(R"({"a": "s.safetensors", "a": "t.safetensors"})");
    expect_error([&] { Checkpoint checkpoint(dir_.path()); }, AXL_ERR_FORMAT, "duplicate key 'a'");
    write_file_atomic(dir_.file("model.safetensors.index.json"), "{\"weight_map\": ");
    expect_error([&] { Checkpoint checkpoint(dir_.path()); }, AXL_ERR_FORMAT, "not valid JSON");
}

TEST_F(CheckpointTest, CorruptShardIsAFormatErrorNamingIt) {
    test::write_bytes(dir_.file("shard1.safetensors"), "short");
    write_index(R"({"a": "shard1.safetensors"})");
    expect_error([&] { Checkpoint checkpoint(dir_.path()); }, AXL_ERR_FORMAT, "shard1.safetensors");
}

}  // namespace
}  // namespace axl
