/* Helpers shared by the example programs: flag parsing, the data directory,
 * a terminal progress bar, and MNIST evaluation. */
#ifndef NN_EXAMPLES_CLI_H
#define NN_EXAMPLES_CLI_H

#include "nn.h"
#ifdef NN_HAVE_MPI
#include "nn/dist.h"
#endif

/* Parse value as an int / float / uint64 within [min, max] for flag; prints
 * an error naming the flag and returns 0 if it is not one. */
int cli_int(const char *flag, const char *value, long min, long max, int *out);
int cli_float(const char *flag, const char *value, double min, double max, float *out);
int cli_u64(const char *flag, const char *value, uint64_t *out);

/* argv[*i] is flag and needs a value: returns it and advances *i, or prints
 * an error and returns NULL. */
const char *cli_value(int argc, char **argv, int *i);

#ifdef NN_HAVE_MPI
/* --dist: nn_dist_init, and stdout to /dev/null on ranks other than 0 (rank
 * 0 speaks for the job). 0 after printing the error if it fails. */
int cli_dist_start(nn_dist *d, int *argc, char ***argv);
#endif

/* The data directory: the --data flag if given, else $NN_DATA_DIR, else
 * fallback. */
const char *cli_data_dir(const char *flag_value, const char *fallback);

/* Load MNIST (both splits) from dir; on failure prints the error with a hint
 * on getting the data and returns 0. */
int cli_load_mnist(const char *dir, nn_dataset *train, nn_dataset *test);

/* Seconds on a monotonic clock. */
double cli_now(void);

/* A progress bar on stderr: redrawn in place on a terminal, else a plain
 * line every quarter of the epoch. unit names what samples counts ("img",
 * "chars"); an accuracy below 0 is not shown. */
typedef struct progress {
    const char *label, *unit;
    int total;
    int tty;
    int quiet;
    double start, last_draw;
    int next_plain; /* next quarter to print when not a tty */
} progress;

void progress_start(progress *p, const char *label, int total_batches, const char *unit,
                    int quiet);
void progress_update(progress *p, int done, double loss, double acc, long samples);
void progress_end(progress *p);

/* Index of the largest of n values. */
int argmax(const float *v, int n);

/* Accuracy (0..1) of model on d, in evaluation mode without gradients,
 * batch by batch, with inputs standardised like the training batches. */
double evaluate_accuracy(nn_layer *model, nn_graph *g, const nn_dataset *d, nn_layout layout);

/* Learning-rate schedules of the trainers' --schedule: "decay" (constant,
 * then a cosine to 0 over the last 25% of the steps), "cosine" (to 0 over
 * the whole run) or "constant". cli_schedule_ok prints an error for any
 * other name and returns 0; cli_schedule_lr gives the rate for a step. */
int cli_schedule_ok(const char *name);
float cli_schedule_lr(const char *name, float lr, long step, long total_steps);

#endif
