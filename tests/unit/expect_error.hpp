// Checks that an action throws axl::Error with a given status code and a message naming
// what went wrong; shared by the unit tests of every part.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "core/error.hpp"

namespace axl::test {

template <typename Action>
void expect_error(Action&& action, axl_status code, const std::string& needle) {
    try {
        action();
        ADD_FAILURE() << "expected an axl error (code " << code << ") containing '" << needle << "'";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), code) << e.what();
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
            << "message '" << e.what() << "' lacks '" << needle << "'";
    }
}

}  // namespace axl::test
