#include "io/atomic_file.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io_test_support.hpp"

namespace axl {
namespace {

using test::expect_error;
using test::TempDir;

TEST(AtomicFileTest, WritesReplacesAndReadsBack) {
    TempDir dir;
    const std::string path = dir.file("config.json");
    write_file_atomic(path, "first");
    EXPECT_EQ(read_text_file(path), "first");
    write_file_atomic(path, std::string("second\0with nul", 15));
    EXPECT_EQ(read_text_file(path), std::string("second\0with nul", 15));
    write_file_atomic(path, "");
    EXPECT_EQ(read_text_file(path), "");
    EXPECT_TRUE(dir.temp_files().empty());
}

TEST(AtomicFileTest, ReadsAFileLargerThanOneChunk) {
    TempDir dir;
    std::string big(300000, 'x');
    big[123456] = 'y';
    write_file_atomic(dir.file("big"), big);
    EXPECT_EQ(read_text_file(dir.file("big")), big);
}

TEST(AtomicFileTest, FailureOnADirectoryTargetLeavesItAndNoTempFile) {
    TempDir dir;
    const std::string path = dir.file("adapter");
    make_directories(path + "/inner");
    expect_error([&] { write_file_atomic(path, "data"); }, AXL_ERR_IO, path);
    EXPECT_TRUE(std::filesystem::is_directory(path + "/inner"));
    EXPECT_TRUE(dir.temp_files().empty());
}

TEST(AtomicFileTest, MissingParentDirectoryIsAnIoError) {
    TempDir dir;
    expect_error([&] { write_file_atomic(dir.file("no/such/file"), "data"); }, AXL_ERR_IO,
                 "no/such/file");
}

TEST(AtomicFileTest, UnwritableDirectoryKeepsTheExistingFile) {
    if (::geteuid() == 0) GTEST_SKIP() << "root ignores directory permissions";
    TempDir dir;
    const std::string sub = dir.file("locked");
    make_directories(sub);
    write_file_atomic(sub + "/f", "old");
    ::chmod(sub.c_str(), 0555);
    expect_error([&] { write_file_atomic(sub + "/f", "new"); }, AXL_ERR_IO, sub + "/f");
    ::chmod(sub.c_str(), 0755);
    EXPECT_EQ(read_text_file(sub + "/f"), "old");
}

TEST(AtomicFileTest, WriterWithoutCommitLeavesNothing) {
    TempDir dir;
    const std::string path = dir.file("weights");
    write_file_atomic(path, "old");
    {
        AtomicFileWriter writer(path);
        writer.write("partial", 7);
        EXPECT_EQ(dir.temp_files().size(), 1u);
    }
    EXPECT_TRUE(dir.temp_files().empty());
    EXPECT_EQ(read_text_file(path), "old");
}

TEST(AtomicFileTest, ReadTextFileDistinguishesMissingFromUnreadable) {
    TempDir dir;
    expect_error([&] { read_text_file(dir.file("absent.json")); }, AXL_ERR_NOT_FOUND,
                 "absent.json");
    expect_error([&] { read_text_file(dir.path()); }, AXL_ERR_IO, dir.path());
}

TEST(AtomicFileTest, MakeDirectoriesCreatesParentsAndRejectsAFileInTheWay) {
    TempDir dir;
    make_directories(dir.file("a/b/c"));
    EXPECT_TRUE(std::filesystem::is_directory(dir.file("a/b/c")));
    make_directories(dir.file("a/b/c"));  // existing: fine
    write_file_atomic(dir.file("plain"), "x");
    expect_error([&] { make_directories(dir.file("plain")); }, AXL_ERR_IO, "plain");
    expect_error([&] { make_directories(dir.file("plain/sub")); }, AXL_ERR_IO, "plain/sub");
}

}  // namespace
}  // namespace axl
