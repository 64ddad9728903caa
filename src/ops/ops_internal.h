/* Ops that write their result over an input, for layers whose forward
 * knows that input has no other reader: an intermediate product whose
 * recorded backward (a matmul's) does not read it. The result shares the
 * input's buffer (the input's values are gone); gradients are separate as
 * usual. Arguments and errors as the public op of the same name. */
#ifndef NN_OPS_INTERNAL_H
#define NN_OPS_INTERNAL_H

#include "nn/ops.h"

/* a + b, written over b. */
nn_tensor *nn__add_over(nn_graph *g, nn_tensor *a, nn_tensor *b);

/* gelu(x), written over x. */
nn_tensor *nn__gelu_over(nn_graph *g, nn_tensor *x);

#endif
