/* A small SVG chart writer: training loss per step and test accuracy per
 * epoch, side by side. Plain SVG text, readable in any browser. */
#ifndef NN_EXAMPLES_PLOT_H
#define NN_EXAMPLES_PLOT_H

/* Returns 1 on success, else prints an error naming path and returns 0. */
int plot_training_svg(const char *path, const char *title, const float *loss, int n_loss,
                      const float *test_acc, int n_acc);

#endif
