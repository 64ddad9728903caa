/* End to end: small MLPs must learn XOR and two interleaved spirals to 100%
 * training accuracy, and training must be reproducible from its seed. */
#include <math.h>
#include <string.h>

#include "nn.h"
#include "test.h"

typedef struct {
    nn_tensor *x;
    int *labels;
    int n;
} toy_set;

static int accuracy_count(nn_graph *g, nn_layer *model, const toy_set *s)
{
    nn_graph_reset(g);
    nn_graph_set_grad_enabled(g, 0);
    nn_tensor *logits = nn_layer_forward(model, g, s->x);
    nn_graph_set_grad_enabled(g, 1);
    int correct = 0;
    for (int i = 0; i < s->n; i++) {
        const float *row = logits->data + (size_t)i * logits->shape[1];
        int pred = row[1] > row[0];
        correct += pred == s->labels[i];
    }
    return correct;
}

/* Full-batch Adam until every point is right (checked every 25 steps) or
 * max_steps pass. Returns the steps taken, or -1; *final_loss gets the last
 * loss. */
static int train_until_perfect(nn_layer *model, const toy_set *s, float lr, int max_steps,
                               float *final_loss)
{
    nn_params p;
    nn_params_init(&p);
    nn_layer_params(model, &p);
    nn_optim *opt = nn_optim_adam_new(&p, nn_adam_defaults(lr));
    nn_graph *g = nn_graph_new();
    int result = -1;
    for (int step = 1; step <= max_steps; step++) {
        nn_graph_reset(g);
        nn_optim_zero_grad(opt);
        nn_tensor *loss = nn_softmax_cross_entropy(g, nn_layer_forward(model, g, s->x), s->labels);
        *final_loss = loss->data[0];
        nn_backward(g, loss, NULL);
        nn_optim_step(opt);
        if (step % 25 == 0 && accuracy_count(g, model, s) == s->n) {
            result = step;
            break;
        }
    }
    nn_graph_free(g);
    nn_optim_free(opt);
    nn_params_free(&p);
    return result;
}

static nn_layer *mlp(int hidden, int depth, nn_activation act, uint64_t seed)
{
    nn_rng r;
    nn_rng_seed(&r, seed);
    nn_layer *m = nn_sequential_new();
    int in = 2;
    for (int i = 0; i < depth; i++) {
        nn_sequential_add(m, nn_dense_new(in, hidden, act == NN_ACT_RELU ? NN_INIT_HE : NN_INIT_XAVIER, &r));
        nn_sequential_add(m, nn_activation_new(act));
        in = hidden;
    }
    nn_sequential_add(m, nn_dense_new(in, 2, NN_INIT_XAVIER, &r));
    return m;
}

static void test_mlp_learns_xor(void)
{
    int labels[4] = {0, 1, 1, 0};
    toy_set s = {nn_tensor_new2(4, 2), labels, 4};
    float pts[8] = {0, 0, 0, 1, 1, 0, 1, 1};
    memcpy(s.x->data, pts, sizeof pts);
    nn_layer *m = mlp(8, 1, NN_ACT_TANH, 1);
    float loss;
    int steps = train_until_perfect(m, &s, 0.05f, 1000, &loss);
    CHECK_MSG(steps > 0, "XOR not learned in 1000 steps (loss %g)", loss);
    nn_layer_free(m);
    nn_tensor_free(s.x);
}

static toy_set two_spirals(int per_class)
{
    toy_set s = {nn_tensor_new2(2 * per_class, 2), NULL, 2 * per_class};
    static int labels[1024];
    s.labels = labels;
    for (int i = 0; i < per_class; i++) {
        double t = 0.25 + 3.0 * 3.14159265 * i / per_class; /* one and a half turns */
        double r = t / (3.0 * 3.14159265);
        for (int c = 0; c < 2; c++) {
            int k = 2 * i + c;
            double sign = c ? -1.0 : 1.0;
            s.x->data[2 * k] = (float)(sign * r * cos(t));
            s.x->data[2 * k + 1] = (float)(sign * r * sin(t));
            labels[k] = c;
        }
    }
    return s;
}

static void test_mlp_learns_two_spirals(void)
{
    toy_set s = two_spirals(60);
    nn_layer *m = mlp(32, 2, NN_ACT_TANH, 7);
    float loss;
    int steps = train_until_perfect(m, &s, 0.01f, 4000, &loss);
    CHECK_MSG(steps > 0, "two spirals not separated in 4000 steps (loss %g)", loss);
    nn_layer_free(m);
    nn_tensor_free(s.x);
}

static void test_training_is_reproducible_from_seed(void)
{
    toy_set s = two_spirals(40);
    float loss[2];
    for (int run = 0; run < 2; run++) {
        nn_layer *m = mlp(16, 2, NN_ACT_RELU, 99);
        train_until_perfect(m, &s, 0.01f, 100, &loss[run]);
        nn_layer_free(m);
    }
    CHECK(memcmp(&loss[0], &loss[1], sizeof(float)) == 0);
    nn_tensor_free(s.x);
}

const test_case train_tests[] = {{"train_mlp_learns_xor", test_mlp_learns_xor},
                                 {"train_mlp_learns_two_spirals", test_mlp_learns_two_spirals},
                                 {"train_reproducible_from_seed", test_training_is_reproducible_from_seed},
                                 {NULL, NULL}};
