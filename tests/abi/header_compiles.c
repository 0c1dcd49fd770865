/* The public header compiles on its own as strict C99 with every warning an error
 * (-std=c99 -Wall -Wextra -pedantic -Werror, set in tests/abi.cmake), and links. */
#include "axl.h"

#include <stdio.h>

int main(void) {
    axl_status (AXL_CALL *create)(const axl_context_options *, axl_context **) = axl_context_create;
    printf("axl.h as C99: %s\n", axl_version_string());
    return create != NULL && axl_version() == AXL_VERSION_NUMBER ? 0 : 1;
}
