/* libFuzzer harness: the CSV reader, with the target named "y" (auto class
 * or float targets, both class orders), as features only, and with ';'. */
#include <stdint.h>
#include <stdlib.h>

#include "nn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nn_error err;
    nn_data d;
    nn_csv_opts o = nn_csv_defaults("y");
    o.order = size % 2 ? NN_CSV_SORTED : NN_CSV_FIRST_SEEN;
    if (nn_csv_parse((const char *)data, size, "fuzz.csv", &o, &d, &err) == NN_OK) {
        nn_data copy;
        if (nn_data_copy(&d, &copy, &err) == NN_OK) nn_data_free(&copy);
        nn_data_free(&d);
    }
    o = nn_csv_defaults(NULL);
    o.delimiter = ';';
    if (nn_csv_parse((const char *)data, size, "fuzz.csv", &o, &d, &err) == NN_OK) nn_data_free(&d);
    return 0;
}
