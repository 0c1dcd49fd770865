#include "quant/quant_array.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <vector>

namespace axl {
namespace {

TEST(QuantArray, OwnsWhatItIsGiven) {
    QuantArray<float> array(std::vector<float>{1.0f, 2.0f, 3.0f});
    EXPECT_FALSE(array.is_view());
    EXPECT_EQ(array.size(), 3u);
    array[1] = 5.0f;
    array.push_back(4.0f);
    EXPECT_EQ(array, (std::vector<float>{1.0f, 5.0f, 3.0f, 4.0f}));
    QuantArray<float> copy = array;
    copy[0] = 9.0f;
    EXPECT_EQ(array[0], 1.0f) << "a copy of an owned array owns its own elements";
}

TEST(QuantArray, ViewReadsInPlaceAndKeepsItsOwnerAlive) {
    auto storage = std::make_shared<std::vector<uint8_t>>(std::vector<uint8_t>{7, 8, 9});
    std::weak_ptr<std::vector<uint8_t>> watch = storage;
    QuantArray<uint8_t> view = QuantArray<uint8_t>::view(storage->data(), storage->size(), storage);
    const uint8_t* where = storage->data();
    storage.reset();
    EXPECT_FALSE(watch.expired()) << "the view keeps its memory alive";
    const QuantArray<uint8_t>& read = view;
    EXPECT_TRUE(read.is_view());
    EXPECT_EQ(read.data(), where) << "reading a view does not copy";
    QuantArray<uint8_t> moved = std::move(view);
    EXPECT_EQ(static_cast<const QuantArray<uint8_t>&>(moved).data(), where);
    EXPECT_TRUE(view.empty());
}

TEST(QuantArray, FirstWriteToAViewCopiesAndReleasesTheOwner) {
    auto storage = std::make_shared<std::vector<float>>(std::vector<float>{1.0f, 2.0f});
    std::weak_ptr<std::vector<float>> watch = storage;
    QuantArray<float> array = QuantArray<float>::view(storage->data(), storage->size(), storage);
    QuantArray<float> shared = array;
    storage.reset();
    array[0] = 3.0f;
    EXPECT_FALSE(array.is_view());
    EXPECT_EQ(array, (std::vector<float>{3.0f, 2.0f}));
    EXPECT_EQ(shared, (std::vector<float>{1.0f, 2.0f})) << "other views still see the original";
    shared.clear();
    EXPECT_TRUE(watch.expired()) << "no view left, the memory is released";
}

}  // namespace
}  // namespace axl
