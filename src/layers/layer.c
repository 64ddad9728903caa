/* The generic layer interface: dispatch through each layer's vtable. */
#include <stdlib.h>

#include "nn/layers.h"

nn_tensor *nn_layer_forward(nn_layer *l, nn_graph *g, nn_tensor *x)
{
    return l->vt->forward(l, g, x);
}

nn_status nn_layer_params(nn_layer *l, nn_params *out)
{
    return l->vt->collect_params ? l->vt->collect_params(l, "", out) : NN_OK;
}

void nn_layer_set_training(nn_layer *l, int training)
{
    l->training = training != 0;
    if (l->vt->set_training) l->vt->set_training(l, l->training);
}

void nn_layer_free(nn_layer *l)
{
    if (l) l->vt->destroy(l);
}
