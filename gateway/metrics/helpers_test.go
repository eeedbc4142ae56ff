package metrics

// Small stand-ins for client_golang's prometheus/testutil. testutil imports
// github.com/kylelemons/godebug, which go.mod does not require, and go.mod is not ours to edit;
// these helpers gather from the registry and compare text exposition the same way.

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// gatherText renders the families named (all if none) in text exposition format.
func gatherText(g prometheus.Gatherer, names ...string) ([]byte, error) {
	mfs, err := g.Gather()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if len(names) > 0 && !slices.Contains(names, mf.GetName()) {
			continue
		}
		if err := enc.Encode(mf); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

// gatherAndCompare is testutil.GatherAndCompare over a string: Gather sorts families, series
// and labels, so the rendering is canonical.
func gatherAndCompare(g prometheus.Gatherer, want string, names ...string) error {
	got, err := gatherText(g, names...)
	if err != nil {
		return err
	}
	if w := strings.TrimLeft(want, "\n"); string(got) != w {
		return fmt.Errorf("metrics differ\n--- got:\n%s--- want:\n%s", got, w)
	}
	return nil
}

// gatherAndCount counts the series of the families named.
func gatherAndCount(g prometheus.Gatherer, names ...string) (int, error) {
	mfs, err := g.Gather()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, mf := range mfs {
		if slices.Contains(names, mf.GetName()) {
			n += len(mf.GetMetric())
		}
	}
	return n, nil
}

// toFloat64 is the value of a collector holding exactly one counter or gauge series.
func toFloat64(c prometheus.Collector) float64 {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil || len(mfs) != 1 || len(mfs[0].GetMetric()) != 1 {
		panic(fmt.Sprintf("toFloat64: want one series, got %v (err %v)", mfs, err))
	}
	m := mfs[0].GetMetric()[0]
	if m.GetCounter() != nil {
		return m.GetCounter().GetValue()
	}
	return m.GetGauge().GetValue()
}
