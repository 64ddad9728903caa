#include "test.h"
const test_case data_tests[] = {{NULL, NULL}};
