#include "test.h"
const test_case train_tests[] = {{NULL, NULL}};
