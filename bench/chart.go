package bench

import (
	"fmt"
	"image/color"
	"os"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

var (
	clusterColor  = color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}
	baselineColor = color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}
)

// WriteChart draws throughput (MB/s) and latency (p50, p99) of every row,
// cluster beside baseline, as one PNG.
func (r *Report) WriteChart(path string) error {
	var names []string
	var mbC, mbB, p50C, p50B, p99C, p99B plotter.Values
	for _, row := range r.Rows {
		c := row.Cluster
		names = append(names, fmt.Sprintf("%s %s", c.Workload, FormatSize(c.Size)))
		mbC, p50C, p99C = append(mbC, c.MBPerSec), append(p50C, c.P50ms), append(p99C, c.P99ms)
		b := row.Baseline
		if b == nil {
			b = &Result{}
		}
		mbB, p50B, p99B = append(mbB, b.MBPerSec), append(p50B, b.P50ms), append(p99B, b.P99ms)
	}
	if len(names) == 0 {
		return fmt.Errorf("bench: chart: no results")
	}
	tp, err := barPlot("Throughput (MB/s, higher is better)", names, mbC, mbB, "cluster", "raw flatfs")
	if err != nil {
		return err
	}
	lat, err := barPlot("Latency (ms, lower is better)", names, p50C, p50B, "cluster p50", "raw flatfs p50")
	if err != nil {
		return err
	}
	// p99 as thin bars over the p50 ones.
	for i, vs := range []plotter.Values{p99C, p99B} {
		b, err := plotter.NewBarChart(vs, vg.Points(4))
		if err != nil {
			return err
		}
		b.Color = color.Black
		b.Offset = vg.Points(float64(2*i-1) * 7)
		lat.Add(b)
		if i == 0 {
			lat.Legend.Add("p99 (thin)", b)
		}
	}
	const w, h = 9 * vg.Inch, 8 * vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 2, Cols: 1, PadY: vg.Points(12)}
	plots := [][]*plot.Plot{{tp}, {lat}}
	canvases := plot.Align(plots, tiles, dc)
	tp.Draw(canvases[0][0])
	lat.Draw(canvases[1][0])
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	png := vgimg.PngCanvas{Canvas: img}
	if _, err := png.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("bench: chart %s: %w", path, err)
	}
	return f.Close()
}

func barPlot(title string, names []string, a, b plotter.Values, la, lb string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.Legend.Top = true
	width := vg.Points(14)
	for i, vs := range []plotter.Values{a, b} {
		bars, err := plotter.NewBarChart(vs, width)
		if err != nil {
			return nil, err
		}
		bars.LineStyle.Width = 0
		bars.Color = []color.Color{clusterColor, baselineColor}[i]
		bars.Offset = vg.Points(float64(2*i-1) * 7)
		p.Add(bars)
		p.Legend.Add([]string{la, lb}[i], bars)
	}
	p.NominalX(names...)
	return p, nil
}
