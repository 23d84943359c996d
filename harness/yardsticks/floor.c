/* The floor for this problem: the same training (2-H-1 sigmoid network, MSE, Adam as
 * in Kingma & Ba) as a plain C loop, float64. `compare.py bench` compiles and runs it
 * to measure how fast one epoch can be on the machine, and checks its final loss
 * against the numpy row's.
 *
 * usage: floor EPOCHS HIDDEN LR BETA1 BETA2 EPS THETA0...   (4*HIDDEN+1 numbers, the
 * flat order W1, b1, W2, b2 row-major); prints "<seconds> <final logged loss>".
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define MAX_HIDDEN 64

int main(int argc, char **argv) {
    if (argc < 8) return 2;
    long epochs = atol(argv[1]);
    int h = atoi(argv[2]);
    double lr = atof(argv[3]), beta1 = atof(argv[4]), beta2 = atof(argv[5]), eps = atof(argv[6]);
    int n = 4 * h + 1;
    if (h < 1 || h > MAX_HIDDEN || argc != 7 + n) return 2;
    double theta[4 * MAX_HIDDEN + 1], m[4 * MAX_HIDDEN + 1] = {0}, v[4 * MAX_HIDDEN + 1] = {0};
    double g[4 * MAX_HIDDEN + 1];
    for (int i = 0; i < n; i++) theta[i] = atof(argv[7 + i]);
    const double X[4][2] = {{0, 0}, {0, 1}, {1, 0}, {1, 1}}, y[4] = {0, 1, 1, 0};
    double *W1 = theta, *b1 = theta + 2 * h, *W2 = theta + 3 * h, *b2 = theta + 4 * h;
    double *gW1 = g, *gb1 = g + 2 * h, *gW2 = g + 3 * h, *gb2 = g + 4 * h;
    double loss = 0, bp1 = 1, bp2 = 1;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long e = 0; e < epochs; e++) {
        for (int i = 0; i < n; i++) g[i] = 0;
        loss = 0;
        for (int s = 0; s < 4; s++) {
            double a1[MAX_HIDDEN], z2 = b2[0];
            for (int j = 0; j < h; j++) {
                double z1 = X[s][0] * W1[j] + X[s][1] * W1[h + j] + b1[j];
                a1[j] = 1 / (1 + exp(-z1));
                z2 += a1[j] * W2[j];
            }
            double a2 = 1 / (1 + exp(-z2)), err = a2 - y[s];
            loss += err * err / 4;
            double dz2 = 2 * err / 4 * a2 * (1 - a2);
            gb2[0] += dz2;
            for (int j = 0; j < h; j++) {
                double dz1 = dz2 * W2[j] * a1[j] * (1 - a1[j]);
                gW2[j] += a1[j] * dz2;
                gW1[j] += X[s][0] * dz1;
                gW1[h + j] += X[s][1] * dz1;
                gb1[j] += dz1;
            }
        }
        bp1 *= beta1;
        bp2 *= beta2;
        for (int i = 0; i < n; i++) {
            m[i] = beta1 * m[i] + (1 - beta1) * g[i];
            v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i];
            theta[i] -= lr * (m[i] / (1 - bp1)) / (sqrt(v[i] / (1 - bp2)) + eps);
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("%.9f %.17g\n", (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec), loss);
    return 0;
}
