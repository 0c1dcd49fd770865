// The public header compiles on its own as C++11 with every warning an error (-Wall -Wextra
// -pedantic -Werror, set in tests/abi.cmake), and its functions link with C linkage.
#include "axl.h"

#include <cstdio>
#include <type_traits>

static_assert(std::is_same<axl_status, int32_t>::value, "axl_status is int32_t");
static_assert(std::is_standard_layout<axl_context_options>::value, "public structs are plain C");
static_assert(std::is_trivially_copyable<axl_step_result>::value, "public structs are plain C");

int main() {
    axl_step_result result;
    if (axl_step_result_init(&result, sizeof result) != AXL_OK) return 1;
    std::printf("axl.h as C++: %s, step result of %u bytes\n", axl_version_string(),
                static_cast<unsigned>(result.struct_size));
    return axl_version() == AXL_VERSION_NUMBER ? 0 : 1;
}
