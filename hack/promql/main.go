// Command promql parses PromQL with Prometheus's own parser and reports what each
// expression selects and which labels it names, so that tests can check fedcompute's alert
// rules and dashboards against the metrics the operator really exports.
//
//	promql < expressions.json
//
// stdin is a JSON array of PromQL strings; stdout a JSON array with, per expression,
// {"error"} or {"selectors": [{"name", "matchers": [{"label", "type", "value"}]}],
// "labels": [...]}. labels holds every label name the expression refers to: in matchers,
// by/without, on/ignoring, group_left/group_right, and the label arguments of label_replace,
// label_join, count_values and sort_by_label(_desc). The parser runs with Prometheus's
// default options, so what it refuses a default Prometheus refuses too.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

type matcher struct {
	Label string `json:"label"`
	Type  string `json:"type"`
	Value string `json:"value"`
}

type selector struct {
	Name     string    `json:"name"`
	Matchers []matcher `json:"matchers"`
}

type report struct {
	Selectors []selector `json:"selectors"`
	Labels    []string   `json:"labels"`
}

func main() {
	if len(os.Args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: promql < expressions.json")
		os.Exit(2)
	}
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("reading stdin: %v", err)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(input, &items); err != nil {
		fail("stdin must be a JSON array of strings: %v", err)
	}
	p := parser.NewParser(parser.Options{})
	results := make([]any, 0, len(items))
	for i, raw := range items {
		var expression string
		if err := json.Unmarshal(raw, &expression); err != nil {
			results = append(results, map[string]string{"error": fmt.Sprintf("item %d is not a string", i)})
			continue
		}
		expr, err := p.ParseExpr(expression)
		if err != nil {
			results = append(results, map[string]string{"error": err.Error()})
			continue
		}
		results = append(results, describe(expr))
	}
	encoder := json.NewEncoder(os.Stdout)
	encoder.SetEscapeHTML(false)
	if err := encoder.Encode(results); err != nil {
		fail("%v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "promql: "+format+"\n", args...)
	os.Exit(2)
}

func describe(expr parser.Expr) report {
	out := report{Selectors: []selector{}}
	names := map[string]bool{}
	refer := func(labelNames ...string) {
		for _, name := range labelNames {
			names[name] = true
		}
	}
	parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
		switch n := node.(type) {
		case *parser.VectorSelector:
			sel := selector{Name: n.Name, Matchers: []matcher{}}
			for _, m := range n.LabelMatchers {
				// The parser adds the metric name as a __name__ matcher; it is reported as name.
				if n.Name != "" && m.Name == labels.MetricName && m.Type == labels.MatchEqual && m.Value == n.Name {
					continue
				}
				sel.Matchers = append(sel.Matchers, matcher{Label: m.Name, Type: m.Type.String(), Value: m.Value})
				refer(m.Name)
			}
			out.Selectors = append(out.Selectors, sel)
		case *parser.AggregateExpr:
			refer(n.Grouping...)
			if n.Op == parser.COUNT_VALUES {
				refer(stringArgs([]parser.Expr{n.Param})...)
			}
		case *parser.BinaryExpr:
			if n.VectorMatching != nil {
				refer(n.VectorMatching.MatchingLabels...)
				refer(n.VectorMatching.Include...)
			}
		case *parser.Call:
			refer(callLabels(n)...)
		}
		return nil
	})
	out.Labels = make([]string, 0, len(names))
	for name := range names {
		out.Labels = append(out.Labels, name)
	}
	sort.Strings(out.Labels)
	return out
}

// callLabels returns the label names a function call names in its string arguments.
func callLabels(call *parser.Call) []string {
	args := call.Args
	switch call.Func.Name {
	case "label_replace": // (v, dst, replacement, src, regex)
		if len(args) >= 4 {
			return stringArgs([]parser.Expr{args[1], args[3]})
		}
	case "label_join": // (v, dst, separator, src...)
		if len(args) >= 3 {
			return append(stringArgs(args[1:2]), stringArgs(args[3:])...)
		}
	case "sort_by_label", "sort_by_label_desc": // (v, label...)
		if len(args) >= 2 {
			return stringArgs(args[1:])
		}
	}
	return nil
}

func stringArgs(args []parser.Expr) []string {
	var out []string
	for _, arg := range args {
		for paren, ok := arg.(*parser.ParenExpr); ok; paren, ok = arg.(*parser.ParenExpr) {
			arg = paren.Expr
		}
		if s, ok := arg.(*parser.StringLiteral); ok && s.Val != "" {
			out = append(out, s.Val)
		}
	}
	return out
}
