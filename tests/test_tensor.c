/* Tensors, shapes, RNG and initializers. */
#include <string.h>

#include "nn.h"
#include "test.h"

static void test_tensor_new_and_shape(void)
{
    nn_tensor *t = nn_tensor_new3(2, 3, 4);
    CHECK(t);
    CHECK(t->ndim == 3 && t->size == 24);
    CHECK(nn_tensor_dim(t, 0) == 2 && nn_tensor_dim(t, 2) == 4 && nn_tensor_dim(t, 3) == 1);
    for (size_t i = 0; i < t->size; i++) CHECK(t->data[i] == 0.0f);
    char buf[64];
    CHECK(strcmp(nn_tensor_shape_str(t, buf, sizeof buf), "[2x3x4]") == 0);
    nn_tensor_fill(t, 2.5f);
    CHECK(t->data[23] == 2.5f);
    nn_tensor_zero(t);
    CHECK(t->data[5] == 0.0f);
    nn_tensor_free(t);
}

static void test_tensor_rejects_bad_shapes(void)
{
    CHECK(nn_tensor_new(0, (int[]){1}) == NULL);
    CHECK(nn_tensor_new(5, (int[]){1, 1, 1, 1, 1}) == NULL);
    CHECK(nn_tensor_new2(3, 0) == NULL);
    CHECK(nn_tensor_new2(-1, 4) == NULL);
    CHECK(nn_tensor_new4(1 << 30, 1 << 30, 1 << 30, 1 << 30) == NULL);
    nn_tensor_free(NULL);
}

static void test_tensor_copy_shape_error_names_both_shapes(void)
{
    nn_tensor *a = nn_tensor_new2(2, 3), *b = nn_tensor_new2(3, 2), *c = nn_tensor_new2(2, 3);
    nn_error err;
    CHECK(nn_tensor_copy(a, b, &err) == NN_ERR_SHAPE);
    CHECK_MSG(strstr(err.msg, "[2x3]") && strstr(err.msg, "[3x2]"), "message: %s", err.msg);
    nn_tensor_fill(c, 7.0f);
    CHECK(nn_tensor_copy(a, c, &err) == NN_OK);
    CHECK(a->data[5] == 7.0f);
    nn_tensor_free(a);
    nn_tensor_free(b);
    nn_tensor_free(c);
}

static void test_tensor_reshape_within_capacity(void)
{
    nn_tensor *t = nn_tensor_new2(4, 6);
    nn_error err;
    CHECK(nn_tensor_reshape(t, 3, (int[]){2, 3, 4}, &err) == NN_OK);
    CHECK(t->size == 24 && t->shape[2] == 4);
    CHECK(nn_tensor_reshape(t, 2, (int[]){2, 6}, &err) == NN_OK); /* shrink: short batch */
    CHECK(t->size == 12);
    CHECK(nn_tensor_reshape(t, 2, (int[]){5, 6}, &err) == NN_ERR_SHAPE);
    CHECK(strstr(err.msg, "[2x6]") != NULL);
    nn_tensor_free(t);
}

static void test_requires_grad_allocates_zeroed_grad(void)
{
    nn_tensor *t = nn_tensor_new1(5);
    CHECK(t->grad == NULL);
    CHECK(nn_tensor_requires_grad(t, 1) == NN_OK);
    CHECK(t->grad && t->grad[4] == 0.0f && (t->flags & NN_REQUIRES_GRAD));
    t->grad[1] = 3.0f;
    nn_tensor_zero_grad(t);
    CHECK(t->grad[1] == 0.0f);
    CHECK(nn_tensor_requires_grad(t, 0) == NN_OK && !(t->flags & NN_REQUIRES_GRAD));
    nn_tensor_free(t);
}

static void test_rng_is_seeded_and_independent(void)
{
    nn_rng a, b, c;
    nn_rng_seed(&a, 42);
    nn_rng_seed(&b, 42);
    nn_rng_seed(&c, 43);
    int same_c = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t x = nn_rng_u64(&a), y = nn_rng_u64(&b), z = nn_rng_u64(&c);
        CHECK(x == y);
        same_c += x == z;
    }
    CHECK(same_c == 0);
    for (int i = 0; i < 10000; i++) {
        float u = nn_rng_uniform(&a);
        CHECK(u >= 0.0f && u < 1.0f);
        CHECK(nn_rng_below(&a, 7) < 7);
    }
}

/* A fill gives the same numbers as that many single draws, and leaves the
 * generator where they would. */
static void test_rng_uniform_fill_equals_draws(void)
{
    nn_rng a, b;
    nn_rng_seed(&a, 9);
    nn_rng_seed(&b, 9);
    float got[1000];
    nn_rng_uniform_fill(&a, 1000, got);
    int same = 1;
    for (int i = 0; i < 1000; i++) same &= got[i] == nn_rng_uniform(&b);
    CHECK(same);
    CHECK(nn_rng_u64(&a) == nn_rng_u64(&b));
}

static void test_rng_normal_moments(void)
{
    nn_rng r;
    nn_rng_seed(&r, 1);
    double s = 0, s2 = 0;
    int n = 200000;
    for (int i = 0; i < n; i++) {
        double v = nn_rng_normal(&r);
        s += v;
        s2 += v * v;
    }
    CHECK_NEAR(s / n, 0.0, 0.01);
    CHECK_NEAR(s2 / n, 1.0, 0.02);
}

static void test_shuffle_is_permutation(void)
{
    nn_rng r;
    nn_rng_seed(&r, 5);
    int idx[50], seen[50] = {0};
    for (int i = 0; i < 50; i++) idx[i] = i;
    nn_rng_shuffle(&r, idx, 50);
    int moved = 0;
    for (int i = 0; i < 50; i++) {
        seen[idx[i]]++;
        moved += idx[i] != i;
    }
    for (int i = 0; i < 50; i++) CHECK(seen[i] == 1);
    CHECK(moved > 25);
}

static void test_initializers_have_expected_scale(void)
{
    nn_rng r;
    nn_rng_seed(&r, 9);
    nn_tensor *w = nn_tensor_new2(256, 400);
    nn_init_he(w, 400, &r);
    double s2 = 0;
    for (size_t i = 0; i < w->size; i++) s2 += (double)w->data[i] * w->data[i];
    CHECK_NEAR(s2 / w->size, 2.0 / 400, 0.05 * 2.0 / 400);
    nn_init_xavier(w, 400, 256, &r);
    float a = sqrtf(6.0f / 656.0f), mx = 0;
    for (size_t i = 0; i < w->size; i++) mx = fabsf(w->data[i]) > mx ? fabsf(w->data[i]) : mx;
    CHECK(mx <= a && mx > 0.95f * a);
    nn_tensor_free(w);
}

static void test_orthogonal_init(void)
{
    nn_rng r;
    nn_rng_seed(&r, 4);
    nn_tensor *w = nn_tensor_new2(24, 6);
    CHECK(nn_init_orthogonal(w, 1.0f, &r) == NN_OK);
    for (int b = 0; b < 4; b++) /* each 6x6 block: Q Q^T = I */
        for (int i = 0; i < 6; i++)
            for (int k = 0; k < 6; k++) {
                double dot = 0;
                for (int j = 0; j < 6; j++)
                    dot += (double)w->data[(b * 6 + i) * 6 + j] * w->data[(b * 6 + k) * 6 + j];
                CHECK_NEAR(dot, i == k ? 1.0 : 0.0, 1e-5);
            }
    nn_tensor *bad = nn_tensor_new2(5, 3);
    CHECK(nn_init_orthogonal(bad, 1.0f, &r) == NN_ERR_SHAPE);
    nn_tensor_free(w);
    nn_tensor_free(bad);
}

static void test_print_shows_shape_and_values(void)
{
    nn_tensor *t = nn_tensor_new1(3);
    t->data[0] = 1.5f;
    char buf[256] = {0};
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    CHECK(f);
    nn_tensor_print(t, "x", 2, f);
    fclose(f);
    CHECK_MSG(strstr(buf, "x [3]: 1.5 0 ... (1 more)"), "printed: %s", buf);
    nn_tensor_free(t);
}

const test_case tensor_tests[] = {
    {"tensor_new_and_shape", test_tensor_new_and_shape},
    {"tensor_rejects_bad_shapes", test_tensor_rejects_bad_shapes},
    {"tensor_copy_shape_error_names_both_shapes", test_tensor_copy_shape_error_names_both_shapes},
    {"tensor_reshape_within_capacity", test_tensor_reshape_within_capacity},
    {"tensor_requires_grad_allocates_zeroed_grad", test_requires_grad_allocates_zeroed_grad},
    {"rng_is_seeded_and_independent", test_rng_is_seeded_and_independent},
    {"rng_uniform_fill_equals_draws", test_rng_uniform_fill_equals_draws},
    {"rng_normal_moments", test_rng_normal_moments},
    {"rng_shuffle_is_permutation", test_shuffle_is_permutation},
    {"init_he_xavier_scale", test_initializers_have_expected_scale},
    {"tensor_print", test_print_shows_shape_and_values},
    {"init_orthogonal", test_orthogonal_init},
    {NULL, NULL}};
