/* libnn: a minimal, fast CPU neural-network library in C.
 * Include this one header to get the whole public API. */
#ifndef NN_H
#define NN_H

#include "nn/error.h"
#include "nn/tensor.h"
#include "nn/graph.h"
#include "nn/ops.h"
#include "nn/layers.h"
#include "nn/optim.h"
#include "nn/data.h"
#include "nn/threads.h"
#include "nn/io.h"
#include "nn/model.h"
#include "nn/dataset.h"
#include "nn/csv.h"
#include "nn/train.h"
#include "nn/replicas.h"
#include "nn/quant.h"

#define NN_VERSION "0.1.0"

#endif
