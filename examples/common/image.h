/* Grayscale image output for the examples: PNG written by hand (stored
 * deflate blocks, CRC-32 and Adler-32; no library) and image grids. */
#ifndef NN_EXAMPLES_IMAGE_H
#define NN_EXAMPLES_IMAGE_H

#include <stdint.h>

/* Write w x h 8-bit gray pixels (row-major) as a PNG file. Returns 1, or
 * prints an error naming path and returns 0. */
int image_write_png(const char *path, const uint8_t *pixels, int w, int h);

/* Tile n images of rows x cols floats into a grid of grid_cols columns with
 * a 2-pixel gap, mapping [lo, hi] to black..white. *w and *h receive the
 * grid's size; returns a malloc'd pixel buffer or NULL. */
uint8_t *image_grid(const float *images, int n, int rows, int cols, int grid_cols, float lo,
                    float hi, int *w, int *h);

#endif
