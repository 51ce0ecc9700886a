/*
 * bench_svg.h - a small line-chart writer for the benchmarks' SVG plots:
 * panels side by side, each with series of (x, y) points, optional
 * horizontal reference lines, axis labels and a legend. Header-only (each
 * bench .c file is its own executable).
 */
#ifndef PVG_BENCH_SVG_H
#define PVG_BENCH_SVG_H

#include <math.h>
#include <stdio.h>

#define SVG_MAX_SERIES 8
#define SVG_MAX_POINTS 256
#define SVG_MAX_REFS 4

typedef struct svg_series {
    const char *label;
    int n;
    double x[SVG_MAX_POINTS], y[SVG_MAX_POINTS];
    int dashed;
} svg_series;

typedef struct svg_panel {
    const char *title, *xlabel, *ylabel;
    int log2x; /* x on a log2 scale */
    int n_series;
    svg_series s[SVG_MAX_SERIES];
    int n_refs;
    double ref_y[SVG_MAX_REFS];
    const char *ref_label[SVG_MAX_REFS];
} svg_panel;

static const char *const SVG_COLORS[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd",
                                         "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};

static double svg_tx(const svg_panel *p, double x)
{
    return p->log2x ? log2(x) : x;
}

static void svg_write(FILE *f, const svg_panel *panels, int n)
{
    const double pw = 420, ph = 280, ml = 62, mr = 22, mt = 40, mb = 150;
    const double W = n * (ml + pw + mr), H = mt + ph + mb;
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            W, H, W, H);
    for (int pi = 0; pi < n; pi++) {
        const svg_panel *p = &panels[pi];
        double ox = pi * (ml + pw + mr) + ml, oy = mt;
        double x0 = INFINITY, x1 = -INFINITY, y1 = 0;
        for (int s = 0; s < p->n_series; s++)
            for (int i = 0; i < p->s[s].n; i++) {
                double x = svg_tx(p, p->s[s].x[i]);
                if (x < x0) x0 = x;
                if (x > x1) x1 = x;
                if (p->s[s].y[i] > y1) y1 = p->s[s].y[i];
            }
        for (int r = 0; r < p->n_refs; r++)
            if (p->ref_y[r] > y1) y1 = p->ref_y[r];
        if (!(x1 > x0)) x1 = x0 + 1;
        y1 = y1 > 0 ? y1 * 1.1 : 1;
#define SX(v) (ox + (svg_tx(p, v) - x0) / (x1 - x0) * pw)
#define SY(v) (oy + ph - (v) / y1 * ph)
        fprintf(f,
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"13\" "
                "font-weight=\"bold\">%s</text>\n"
                "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
                "stroke=\"#444\"/>\n",
                ox + pw / 2, oy - 16, p->title, ox, oy, pw, ph);
        for (int i = 0; i <= 5; i++) {
            double v = y1 / 1.1 * i / 5;
            fprintf(f,
                    "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                    "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.3f</text>\n",
                    ox, SY(v), ox + pw, SY(v), ox - 5, SY(v) + 4, v);
        }
        for (int i = 0; i <= 5; i++) {
            double lx = x0 + (x1 - x0) * i / 5, v = p->log2x ? exp2(lx) : lx;
            double X = ox + (lx - x0) / (x1 - x0) * pw;
            fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.3g</text>\n", X,
                    oy + ph + 16, v);
        }
        fprintf(f,
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n"
                "<text transform=\"translate(%.1f,%.1f) rotate(-90)\" "
                "text-anchor=\"middle\">%s</text>\n",
                ox + pw / 2, oy + ph + 34, p->xlabel, ox - 48, oy + ph / 2, p->ylabel);
        for (int r = 0; r < p->n_refs; r++)
            fprintf(f,
                    "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#000\" "
                    "stroke-dasharray=\"%s\"/><text x=\"%.1f\" y=\"%.1f\" "
                    "font-size=\"10\">%s</text>\n",
                    ox, SY(p->ref_y[r]), ox + pw, SY(p->ref_y[r]), r ? "2,3" : "6,4", ox + 6,
                    SY(p->ref_y[r]) - 4, p->ref_label[r]);
        for (int s = 0; s < p->n_series; s++) {
            const svg_series *se = &p->s[s];
            const char *c = SVG_COLORS[s % 8];
            fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", c,
                    se->dashed ? " stroke-dasharray=\"5,3\"" : "");
            for (int i = 0; i < se->n; i++)
                fprintf(f, "%.1f,%.1f ", SX(se->x[i]), SY(se->y[i]));
            fprintf(f, "\"/>\n");
            for (int i = 0; i < se->n; i++)
                fprintf(f,
                        "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"><title>%s: "
                        "%g, %.4f</title></circle>\n",
                        SX(se->x[i]), SY(se->y[i]), c, se->label, se->x[i], se->y[i]);
            double ly = oy + ph + 56 + s * 16;
            fprintf(f,
                    "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                    "stroke-width=\"2\"/><text x=\"%.1f\" y=\"%.1f\">%s</text>\n",
                    ox, ly - 4, ox + 20, ly - 4, c, ox + 26, ly, se->label);
        }
#undef SX
#undef SY
    }
    fprintf(f, "</svg>\n");
}

#endif
