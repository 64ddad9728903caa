#include "plot.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define PW 420 /* panel width and height */
#define PH 300
#define ML 60 /* margins inside a panel */
#define MB 40
#define MT 30

/* One panel at x offset ox: a polyline of n values y[i] against
 * x = x0 + i * dx, with axes and five ticks each way. */
static void panel(FILE *f, int ox, const char *label, const char *xlabel, const float *y, int n,
                  double lo, double hi, int points, double x0, double dx)
{
    double w = PW - ML - 20, h = PH - MT - MB;
    fprintf(f, "<g transform=\"translate(%d,0)\">\n", ox);
    fprintf(f, "<text x=\"%d\" y=\"20\" font-size=\"14\" font-weight=\"bold\">%s</text>\n", ML, label);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#888\"/>\n",
            ML, MT, w, h);
    for (int t = 0; t <= 4; t++) {
        double v = lo + (hi - lo) * t / 4, py = MT + h - h * t / 4;
        fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#eee\"/>\n", ML, py,
                ML + w, py);
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%.4g</text>\n",
                ML - 5, py + 4, v);
        double xv = x0 + dx * (n > 1 ? (n - 1) * t / 4.0 : 0);
        fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" font-size=\"11\" text-anchor=\"middle\">%.0f</text>\n",
                ML + w * t / 4, MT + h + 15, xv);
    }
    fprintf(f, "<text x=\"%.0f\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\">%s</text>\n",
            ML + w / 2, PH - 5, xlabel);
    fprintf(f, "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"");
    for (int i = 0; i < n; i++) {
        double px = ML + (n > 1 ? w * i / (n - 1) : w / 2);
        double v = y[i] < lo ? lo : y[i] > hi ? hi : y[i];
        double py = MT + h - h * (v - lo) / (hi - lo);
        fprintf(f, "%.1f,%.1f ", px, py);
    }
    fprintf(f, "\"/>\n");
    if (points)
        for (int i = 0; i < n; i++) {
            double px = ML + (n > 1 ? w * i / (n - 1) : w / 2);
            double py = MT + h - h * (y[i] - lo) / (hi - lo);
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"#d62728\"><title>%.2f</title></circle>\n",
                    px, py, (double)y[i]);
        }
    fprintf(f, "</g>\n");
}

int plot_training_svg(const char *path, const char *title, const float *loss, int n_loss,
                      const float *test_acc, int n_acc)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "error: %s: cannot write plot: %s\n", path, strerror(errno));
        return 0;
    }
    /* Average the per-step losses into at most 500 points to keep files small. */
    enum { MAXP = 500 };
    float smooth[MAXP];
    int per = n_loss > MAXP ? (n_loss + MAXP - 1) / MAXP : 1, ns = 0;
    double lmax = 0;
    for (int i = 0; i < n_loss; i += per, ns++) {
        double s = 0;
        int k = 0;
        for (; k < per && i + k < n_loss; k++) s += loss[i + k];
        smooth[ns] = (float)(s / k);
        if (smooth[ns] > lmax && isfinite(smooth[ns])) lmax = smooth[ns];
    }
    double amin = 100;
    for (int i = 0; i < n_acc; i++) amin = test_acc[i] < amin ? test_acc[i] : amin;
    amin = floor(amin) < 100 ? floor(amin) : 99;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "font-family=\"sans-serif\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            2 * PW, PH + 30);
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"13\">%s</text>\n", ML, PH + 22, title);
    panel(f, 0, per > 1 ? "training loss (mean of each stretch of steps)" : "training loss", "step",
          smooth, ns, 0, lmax > 0 ? lmax : 1, 0, 1, per);
    panel(f, PW, "test accuracy (%)", "epoch", test_acc, n_acc, amin, 100, 1, 1, 1);
    fprintf(f, "</svg>\n");
    if (fclose(f) != 0) {
        fprintf(stderr, "error: %s: write failed\n", path);
        return 0;
    }
    return 1;
}
