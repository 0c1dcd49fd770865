#include "io/safetensors.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>

#include "io_test_support.hpp"

namespace axl {
namespace {

using test::expect_error;
using test::TempDir;

// A safetensors file from raw parts, so tests can break any rule the writer keeps.
std::string raw_file(const std::string& header, const std::string& data) {
    std::string out(8, '\0');
    uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(n >> (8 * i));
    return out + header + data;
}

template <typename T>
std::string bytes_of(const std::vector<T>& values) {
    return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
}

class SafetensorsTest : public ::testing::Test {
protected:
    // Writes `header` + `data` as a file and opens it.
    void open_raw(const std::string& header, const std::string& data) {
        test::write_bytes(path_, raw_file(header, data));
        SafetensorsFile file(path_);
    }
    void expect_rejected(const std::string& header, const std::string& data, axl_status code,
                         const std::string& needle) {
        expect_error([&] { open_raw(header, data); }, code, needle);
    }

    TempDir dir_;
    std::string path_ = dir_.file("t.safetensors");
    std::shared_ptr<HostAllocator> allocator_ = std::make_shared<HostAllocator>(nullptr);
};

TEST_F(SafetensorsTest, RoundTripsSeveralDtypesAndMetadata) {
    std::vector<float> f32 = {1.5f, -2.0f, 3.25f, 0.0f, 5.0f, -6.5f};
    std::vector<uint16_t> bf16 = {0x3f80, 0xc000, 0x4040, 0x0000};
    std::vector<uint16_t> f16 = {0x3c00, 0xc000, 0x4200};
    std::vector<double> f64 = {1e300, -0.125};
    std::vector<int32_t> i32 = {1, -2, 3, -4};
    std::vector<uint8_t> u8 = {1, 2, 3, 4, 5};
    std::vector<int64_t> scalar = {-7};
    std::vector<NamedTensor> tensors = {
        {"w.f32", DType::F32, {2, 3}, f32.data()},   {"w.bf16", DType::BF16, {4}, bf16.data()},
        {"w.f16", DType::F16, {3}, f16.data()},      {"w.f64", DType::F64, {2}, f64.data()},
        {"w.i32", DType::I32, {2, 2}, i32.data()},   {"w.u8", DType::U8, {5}, u8.data()},
        {"w.scalar", DType::I64, {}, scalar.data()}, {"w.empty", DType::F32, {0, 4}, nullptr},
    };
    write_safetensors(path_, tensors, {{"format", "pt"}, {"note", "caf\xc3\xa9"}});

    SafetensorsFile file(path_);
    EXPECT_EQ(file.metadata().at("format"), "pt");
    EXPECT_EQ(file.metadata().at("note"), "caf\xc3\xa9");
    ASSERT_EQ(file.tensors().size(), tensors.size());
    for (const NamedTensor& expected : tensors) {
        const TensorInfo* info = file.find(expected.name);
        ASSERT_NE(info, nullptr) << expected.name;
        EXPECT_EQ(info->dtype, expected.dtype) << expected.name;
        EXPECT_EQ(info->shape, expected.shape) << expected.name;
        EXPECT_EQ(info->file, path_);
        size_t bytes = static_cast<size_t>(shape_numel(expected.shape)) * dtype_size(expected.dtype);
        ASSERT_EQ(info->nbytes, bytes) << expected.name;
        if (bytes > 0) {
            EXPECT_EQ(std::memcmp(info->data, expected.data, bytes), 0) << expected.name;
        }
        EXPECT_EQ(reinterpret_cast<uintptr_t>(info->data) % dtype_size(expected.dtype), 0u)
            << expected.name << " is not aligned";
    }
    EXPECT_EQ(file.find("absent"), nullptr);
}

TEST_F(SafetensorsTest, WriterPadsHeaderAndOrdersByAlignmentThenName) {
    std::vector<uint8_t> u8 = {1};
    std::vector<float> f32 = {1.0f};
    std::vector<double> f64 = {1.0};
    std::vector<uint16_t> bf16 = {0};
    write_safetensors(path_,
                      {{"b", DType::U8, {1}, u8.data()},
                       {"z", DType::F32, {1}, f32.data()},
                       {"a", DType::F32, {1}, f32.data()},
                       {"c", DType::BF16, {1}, bf16.data()},
                       {"d", DType::F64, {1}, f64.data()}},
                      {});
    std::string bytes = test::read_bytes(path_);
    uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    EXPECT_EQ(n % 8, 0u);
    EXPECT_EQ(bytes[8], '{');
    auto header = nlohmann::json::parse(bytes.substr(8, n));
    EXPECT_FALSE(header.contains("__metadata__"));
    std::vector<std::pair<uint64_t, std::string>> by_offset;
    for (const auto& [name, entry] : header.items())
        by_offset.emplace_back(entry["data_offsets"][0].get<uint64_t>(), name);
    std::sort(by_offset.begin(), by_offset.end());
    std::vector<std::string> order;
    for (const auto& [offset, name] : by_offset) order.push_back(name);
    EXPECT_EQ(order, (std::vector<std::string>{"d", "a", "z", "c", "b"}));
}

TEST_F(SafetensorsTest, OverwritesAnExistingFileAndLeavesNoTempFile) {
    test::write_bytes(path_, "old contents");
    std::vector<float> values = {4.0f};
    write_safetensors(path_, {{"x", DType::F32, {1}, values.data()}}, {});
    SafetensorsFile file(path_);
    EXPECT_EQ(file.tensors().size(), 1u);
    EXPECT_TRUE(dir_.temp_files().empty());
}

TEST_F(SafetensorsTest, AcceptsWhitespaceAroundTheHeader) {
    std::string header = "  \n{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}  \t ";
    test::write_bytes(path_, raw_file(header, bytes_of(std::vector<float>{2.0f})));
    SafetensorsFile file(path_);
    ASSERT_NE(file.find("x"), nullptr);
}

TEST_F(SafetensorsTest, AcceptsEmptyHeaderAndNullMetadata) {
    test::write_bytes(path_, raw_file("{\"__metadata__\":null}", ""));
    SafetensorsFile file(path_);
    EXPECT_TRUE(file.tensors().empty());
    EXPECT_TRUE(file.metadata().empty());
}

TEST_F(SafetensorsTest, ReadAsF32ConvertsFloatDtypes) {
    std::vector<uint16_t> bf16 = {0x3f80, 0xc040};   // 1, -3
    std::vector<uint16_t> f16 = {0x3800, 0x4900};    // 0.5, 10
    std::vector<double> f64 = {0.25, -8.0};
    std::vector<float> f32 = {7.0f, 8.0f};
    write_safetensors(path_,
                      {{"bf16", DType::BF16, {2}, bf16.data()},
                       {"f16", DType::F16, {2}, f16.data()},
                       {"f64", DType::F64, {1, 2}, f64.data()},
                       {"f32", DType::F32, {2}, f32.data()}},
                      {});
    SafetensorsFile file(path_);
    auto expect_values = [&](const char* name, Shape shape, std::vector<float> want) {
        Tensor t = read_as_f32(*file.find(name), shape, allocator_);
        ASSERT_EQ(t.dtype(), DType::F32);
        ASSERT_EQ(t.shape(), shape);
        for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(t.f32()[i], want[i]) << name << i;
    };
    expect_values("bf16", {2}, {1.0f, -3.0f});
    expect_values("f16", {2}, {0.5f, 10.0f});
    expect_values("f64", {1, 2}, {0.25f, -8.0f});
    expect_values("f32", {2}, {7.0f, 8.0f});
}

TEST_F(SafetensorsTest, ReadAsF32HandlesUnalignedData) {
    // A header of 9 bytes puts the data section at byte 17: the floats are misaligned.
    std::string header = "{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}";
    header.append(8 - header.size() % 8 + 1, ' ');
    test::write_bytes(path_, raw_file(header, bytes_of(std::vector<float>{1.0f, 2.0f, 3.0f})));
    SafetensorsFile file(path_);
    ASSERT_NE(reinterpret_cast<uintptr_t>(file.find("x")->data) % 4, 0u);
    Tensor t = read_as_f32(*file.find("x"), {3}, allocator_);
    EXPECT_EQ(t.f32()[0], 1.0f);
    EXPECT_EQ(t.f32()[2], 3.0f);
}

TEST_F(SafetensorsTest, ReadAsF32RejectsShapeMismatch) {
    std::vector<float> values(6, 0.0f);
    write_safetensors(path_, {{"layer.w", DType::F32, {2, 3}, values.data()}}, {});
    SafetensorsFile file(path_);
    expect_error([&] { read_as_f32(*file.find("layer.w"), {3, 2}, allocator_); }, AXL_ERR_SHAPE,
                 "tensor 'layer.w'");
    expect_error([&] { read_as_f32(*file.find("layer.w"), {3, 2}, allocator_); }, AXL_ERR_SHAPE,
                 "has shape [2, 3] but [3, 2] was expected");
}

TEST_F(SafetensorsTest, ReadAsF32RejectsIntegerDtypes) {
    std::vector<int32_t> values = {1, 2};
    write_safetensors(path_, {{"ids", DType::I32, {2}, values.data()}}, {});
    SafetensorsFile file(path_);
    expect_error([&] { read_as_f32(*file.find("ids"), {2}, allocator_); }, AXL_ERR_UNSUPPORTED,
                 "tensor 'ids'");
    expect_error([&] { read_as_f32(*file.find("ids"), {2}, allocator_); }, AXL_ERR_UNSUPPORTED,
                 "I32");
}

TEST_F(SafetensorsTest, MissingFileIsNotFound) {
    expect_error([&] { SafetensorsFile file(dir_.file("nope.safetensors")); }, AXL_ERR_NOT_FOUND,
                 "nope.safetensors");
}

TEST_F(SafetensorsTest, RejectsTruncatedFile) {
    test::write_bytes(path_, std::string("\x05\0\0", 3));
    expect_error([&] { SafetensorsFile file(path_); }, AXL_ERR_FORMAT, "truncated");
    expect_error([&] { SafetensorsFile file(path_); }, AXL_ERR_FORMAT, path_);
}

TEST_F(SafetensorsTest, RejectsHeaderLengthOverLimit) {
    std::string bytes = raw_file("{}", "");
    bytes[3] = 0x10;  // 0x10000000 + 2 > 100,000,000
    test::write_bytes(path_, bytes);
    expect_error([&] { SafetensorsFile file(path_); }, AXL_ERR_FORMAT, "exceeds the limit");
}

TEST_F(SafetensorsTest, RejectsHeaderLengthPastEndOfFile) {
    std::string bytes = raw_file("{}", "");
    bytes[0] = 40;
    test::write_bytes(path_, bytes);
    expect_error([&] { SafetensorsFile file(path_); }, AXL_ERR_FORMAT, "past the end of the file");
}

TEST_F(SafetensorsTest, RejectsBadJson) {
    expect_rejected("{\"x\": {", "", AXL_ERR_FORMAT, "not valid JSON");
    expect_rejected("", "", AXL_ERR_FORMAT, "not valid JSON");
    expect_rejected("{} {}", "", AXL_ERR_FORMAT, "not valid JSON");
    // nlohmann alone would stop at the NUL and accept these.
    expect_rejected(std::string("{}\0\0", 4), "", AXL_ERR_FORMAT, "NUL byte");
    expect_rejected(std::string("{}\0garbage", 10), "", AXL_ERR_FORMAT, "NUL byte");
}

TEST_F(SafetensorsTest, RejectsInvalidUtf8) {
    expect_rejected("{\"\xff\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", "",
                    AXL_ERR_FORMAT, "UTF-8");
}

TEST_F(SafetensorsTest, RejectsHeaderThatIsNotAnObject) {
    expect_rejected("[1, 2]", "", AXL_ERR_FORMAT, "must be a JSON object");
    expect_rejected("{\"x\": [1]}", "", AXL_ERR_FORMAT, "tensor 'x': entry must be a JSON object");
}

TEST_F(SafetensorsTest, RejectsMissingFields) {
    expect_rejected("{\"x\":{\"dtype\":\"F32\",\"shape\":[1]}}", std::string(4, '\0'),
                    AXL_ERR_FORMAT, "tensor 'x': missing 'data_offsets'");
    expect_rejected("{\"x\":{\"shape\":[1],\"data_offsets\":[0,4]}}", std::string(4, '\0'),
                    AXL_ERR_FORMAT, "missing 'dtype'");
    expect_rejected("{\"x\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", std::string(4, '\0'),
                    AXL_ERR_FORMAT, "missing 'shape'");
}

TEST_F(SafetensorsTest, RejectsFieldsOfWrongType) {
    const std::string data(4, '\0');
    expect_rejected("{\"x\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", data,
                    AXL_ERR_FORMAT, "'dtype' must be a string");
    expect_rejected("{\"x\":{\"dtype\":\"F32\",\"shape\":\"1\",\"data_offsets\":[0,4]}}", data,
                    AXL_ERR_FORMAT, "'shape' must be an array");
    expect_rejected("{\"x\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", data,
                    AXL_ERR_FORMAT, "must hold integers");
    expect_rejected("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", data,
                    AXL_ERR_FORMAT, "'data_offsets' must be an array [begin, end]");
    expect_rejected("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\"0\",4]}}", data,
                    AXL_ERR_FORMAT, "must hold integers");
    expect_rejected("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,4]}}", data,
                    AXL_ERR_FORMAT, "negative");
}

TEST_F(SafetensorsTest, RejectsUnknownDtype) {
    expect_rejected("{\"x\":{\"dtype\":\"F7\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                    std::string(4, '\0'), AXL_ERR_FORMAT, "unknown dtype 'F7'");
}

TEST_F(SafetensorsTest, RejectsReferenceDtypeAxlCannotRead) {
    expect_rejected("{\"x\":{\"dtype\":\"U16\",\"shape\":[2],\"data_offsets\":[0,4]}}",
                    std::string(4, '\0'), AXL_ERR_UNSUPPORTED, "U16");
}

TEST_F(SafetensorsTest, RejectsNegativeDimension) {
    expect_rejected("{\"x\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}",
                    std::string(4, '\0'), AXL_ERR_FORMAT, "negative value -1 in shape");
}

TEST_F(SafetensorsTest, RejectsByteCountOverflow) {
    expect_rejected("{\"x\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
                    "\"data_offsets\":[0,4]}}",
                    std::string(4, '\0'), AXL_ERR_FORMAT, "overflow");
    expect_rejected("{\"x\":{\"dtype\":\"U8\",\"shape\":[18446744073709551615],"
                    "\"data_offsets\":[0,4]}}",
                    std::string(4, '\0'), AXL_ERR_FORMAT, "overflow");
}

TEST_F(SafetensorsTest, RejectsEndBeforeBegin) {
    expect_rejected("{\"x\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]}}",
                    std::string(4, '\0'), AXL_ERR_FORMAT, "invalid offset");
}

TEST_F(SafetensorsTest, RejectsSpanThatDoesNotMatchShape) {
    expect_rejected("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}",
                    std::string(20, '\0'), AXL_ERR_FORMAT,
                    "tensor 'w': shape [2, 3] x F32 needs 24 bytes but data_offsets span 20");
}

TEST_F(SafetensorsTest, RejectsOffsetsOutOfRange) {
    expect_rejected("{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
                    std::string(8, '\0'), AXL_ERR_FORMAT, "out of range");
}

TEST_F(SafetensorsTest, RejectsOverlappingOffsets) {
    expect_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                    std::string(12, '\0'), AXL_ERR_FORMAT, "overlaps");
}

TEST_F(SafetensorsTest, RejectsGapBetweenTensors) {
    expect_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                    std::string(12, '\0'), AXL_ERR_FORMAT, "gap of 4 bytes");
}

TEST_F(SafetensorsTest, RejectsGapBeforeFirstTensor) {
    expect_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                    std::string(8, '\0'), AXL_ERR_FORMAT, "gap");
}

TEST_F(SafetensorsTest, RejectsTrailingBytes) {
    expect_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                    std::string(8, '\0'), AXL_ERR_FORMAT, "4 trailing bytes");
    expect_rejected("{}", "x", AXL_ERR_FORMAT, "trailing");
}

TEST_F(SafetensorsTest, AcceptsEmptyTensorsSharingAnOffset) {
    test::write_bytes(path_,
                      raw_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
                               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                               "\"c\":{\"dtype\":\"F16\",\"shape\":[0,3],\"data_offsets\":[4,4]}}",
                               std::string(4, '\0')));
    SafetensorsFile file(path_);
    EXPECT_EQ(file.tensors().size(), 3u);
}

TEST_F(SafetensorsTest, RejectsDuplicateKeys) {
    expect_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                    std::string(4, '\0'), AXL_ERR_FORMAT, "duplicate key 'a'");
    expect_rejected("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[1],"
                    "\"data_offsets\":[0,4]}}",
                    std::string(4, '\0'), AXL_ERR_FORMAT, "duplicate key 'dtype'");
}

TEST_F(SafetensorsTest, RejectsNonStringMetadata) {
    expect_rejected("{\"__metadata__\":{\"epoch\":1}}", "", AXL_ERR_FORMAT,
                    "__metadata__ value of 'epoch' must be a string");
    expect_rejected("{\"__metadata__\":[\"a\"]}", "", AXL_ERR_FORMAT, "__metadata__ must be an object");
}

TEST_F(SafetensorsTest, WriterRejectsDuplicateNames) {
    std::vector<float> values = {1.0f};
    expect_error(
        [&] {
            write_safetensors(path_, {{"x", DType::F32, {1}, values.data()},
                                      {"x", DType::F32, {1}, values.data()}},
                              {});
        },
        AXL_ERR_INVALID_ARGUMENT, "'x'");
    EXPECT_FALSE(std::filesystem::exists(path_));
}

TEST_F(SafetensorsTest, FailedWriteKeepsTheTargetAndRemovesTheTempFile) {
    // A directory where the file should go makes the final rename fail.
    std::filesystem::create_directory(path_);
    std::vector<float> values = {1.0f};
    expect_error([&] { write_safetensors(path_, {{"x", DType::F32, {1}, values.data()}}, {}); },
                 AXL_ERR_IO, path_);
    EXPECT_TRUE(std::filesystem::is_directory(path_));
    EXPECT_TRUE(dir_.temp_files().empty());

    expect_error(
        [&] { write_safetensors(dir_.file("missing/t.safetensors"), {}, {}); }, AXL_ERR_IO,
        "missing/t.safetensors");
}

}  // namespace
}  // namespace axl
