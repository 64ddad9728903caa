/* libnn: optimizers and gradient clipping.
 *
 * An optimizer holds the parameter list it was created with (the tensors, not
 * copies) and its own state (momentum, Adam moments), allocated once at
 * creation: a step allocates nothing. Update rules follow PyTorch's torch.optim
 * so results can be compared one to one, with one difference far below
 * float rounding of any ordinary update: gradients under 1e-17 in magnitude
 * count as zero and state values (momentum, moments) under 1e-30 are stored
 * as zero, so that a parameter whose gradient stops never leaves its state
 * subnormal (slow arithmetic on x86). */
#ifndef NN_OPTIM_H
#define NN_OPTIM_H

#include "layers.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nn_optim nn_optim;

typedef struct nn_sgd_opts {
    float lr;
    float momentum;     /* 0 disables momentum */
    float weight_decay; /* L2 penalty added to the gradient */
    int nesterov;       /* Nesterov momentum (needs momentum > 0) */
} nn_sgd_opts;

typedef struct nn_adam_opts {
    float lr;
    float beta1, beta2;
    float eps;
    float weight_decay; /* Adam: L2 added to the gradient; AdamW: decoupled */
} nn_adam_opts;

/* Defaults, as torch.optim's: Adam and Adamax beta1 0.9, beta2 0.999,
 * eps 1e-8, no weight decay; AdamW the same with weight decay 0.01; SGD
 * plain (no momentum, no weight decay). */
nn_adam_opts nn_adam_defaults(float lr);
nn_adam_opts nn_adamw_defaults(float lr);
nn_sgd_opts nn_sgd_defaults(float lr);

/* The message of the last optimizer constructor of this thread that
 * returned NULL, e.g. "nn_optim_sgd_new: need lr >= 0, ...". */
const char *nn_optim_last_error(void);

/* SGD:  g += wd*p;  buf = momentum*buf + g (buf = g at the first step);
 *       g = nesterov ? g + momentum*buf : buf;  p -= lr*g.
 * Returns NULL on out of memory or invalid options (lr < 0, momentum < 0,
 * nesterov without momentum). */
nn_optim *nn_optim_sgd_new(const nn_params *params, nn_sgd_opts opts);

/* Adam (Kingma & Ba) with bias correction; weight decay as L2 in the gradient. */
nn_optim *nn_optim_adam_new(const nn_params *params, nn_adam_opts opts);

/* AdamW: Adam with decoupled weight decay p -= lr*wd*p before the update. */
nn_optim *nn_optim_adamw_new(const nn_params *params, nn_adam_opts opts);

/* Adamax (Kingma & Ba, section 7; torch.optim.Adamax): Adam with the
 * infinity norm, u = max(beta2 * u, |g| + eps), p -= lr / (1 - beta1^t) *
 * m / u; weight decay as L2 in the gradient. Its state is saved as
 * "optim.exp_avg.<name>" and "optim.exp_inf.<name>". The usual lr is 2e-3. */
nn_optim *nn_optim_adamax_new(const nn_params *params, nn_adam_opts opts);

/* Apply one update from the parameters' current gradients. Frozen
 * parameters (nn_tensor_requires_grad(t, 0)) are skipped. */
void nn_optim_step(nn_optim *o);

/* Parameter groups for weight decay: every parameter starts with the
 * options' weight_decay; nn_optim_set_weight_decay gives one parameter (the
 * tensor itself, as listed at creation) its own (NN_ERR_ARG if it is not
 * one of the optimizer's or the value is negative), and
 * nn_optim_decay_matrices_only sets it to 0 for every parameter of fewer
 * than 2 dims (biases, layer-norm weights), the usual rule for transformers
 * (PyTorch: two param_groups); returns how many it exempted. */
nn_status nn_optim_set_weight_decay(nn_optim *o, const nn_tensor *param, float weight_decay);
int nn_optim_decay_matrices_only(nn_optim *o);

/* Zero the gradients of every parameter of the optimizer. */
void nn_optim_zero_grad(nn_optim *o);

/* Learning rate (for schedules) and the number of steps taken. */
void nn_optim_set_lr(nn_optim *o, float lr);
float nn_optim_lr(const nn_optim *o);
long nn_optim_steps(const nn_optim *o);
/* Restore the step count (bias correction, first momentum step) on resume. */
void nn_optim_set_steps(nn_optim *o, long steps);

/* The optimizer's state as named tensors, for checkpoints: for each
 * parameter i of the optimizer (named as in names, which must be the list it
 * was created from), "optim.momentum_buffer.<name>" (SGD with momentum) or
 * "optim.exp_avg.<name>" and "optim.exp_avg_sq.<name>" (Adam, AdamW), as
 * PyTorch names them. The tensors are the optimizer's own: loading into them
 * restores the state. Appends to out. */
nn_status nn_optim_state(nn_optim *o, const nn_params *names, nn_params *out);

/* "sgd", "adam", "adamw" or "adamax". */
const char *nn_optim_name(const nn_optim *o);

void nn_optim_free(nn_optim *o);

/* Freeze (1) or thaw (0) every tensor of params; see nn_tensor_requires_grad. */
void nn_params_freeze(const nn_params *params, int frozen);

/* Learning-rate schedules: the rate for step (0-based) of total_steps. */
/* Linear warm-up over warmup_steps, then cosine decay from base_lr to min_lr. */
float nn_lr_cosine(float base_lr, float min_lr, long step, long total_steps, long warmup_steps);
/* Constant base_lr, then cosine decay to min_lr over the final decay_steps
 * of total_steps ("stable then decay"). */
float nn_lr_stable_decay(float base_lr, float min_lr, long step, long total_steps, long decay_steps);
/* base_lr * gamma^(step / every) (step decay). */
float nn_lr_step(float base_lr, float gamma, long step, long every);

/* Scale all gradients of params so that their global L2 norm is at most
 * max_norm. Returns the norm before clipping. */
float nn_clip_grad_norm(const nn_params *params, float max_norm);

#ifdef __cplusplus
}
#endif
#endif
