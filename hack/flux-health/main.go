// Command flux-health prints what Flux's kustomize-controller concludes about each object
// from a Kustomization's healthCheckExprs, using Flux's own evaluator
// (github.com/fluxcd/pkg/runtime/cel), so that tests judge fedcompute's Flux expressions
// by the code Flux runs rather than by a reimplementation.
//
//	flux-health EXPRESSIONS.json < objects.json
//
// EXPRESSIONS.json is one healthCheckExprs entry ({"current", "inProgress", "failed"});
// stdin is a JSON array of objects; stdout a JSON array with, per object, {"status"} or,
// when evaluation fails (Flux then keeps waiting until its timeout), {"error"}.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/fluxcd/pkg/apis/kustomize"
	"github.com/fluxcd/pkg/runtime/cel"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: flux-health EXPRESSIONS.json < objects.json")
		os.Exit(2)
	}
	spec, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail("reading %s: %v", os.Args[1], err)
	}
	var exprs kustomize.HealthCheckExpressions
	if err := json.Unmarshal(spec, &exprs); err != nil {
		fail("%s is not a healthCheckExprs entry: %v", os.Args[1], err)
	}
	evaluator, err := cel.NewStatusEvaluator(&exprs)
	if err != nil {
		fail("the expressions do not parse: %v", err)
	}
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("reading stdin: %v", err)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(input, &items); err != nil {
		fail("stdin must be a JSON array of objects: %v", err)
	}
	results := make([]map[string]string, 0, len(items))
	for i, raw := range items {
		results = append(results, evaluate(evaluator, i, raw))
	}
	encoder := json.NewEncoder(os.Stdout)
	encoder.SetEscapeHTML(false)
	if err := encoder.Encode(results); err != nil {
		fail("%v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "flux-health: "+format+"\n", args...)
	os.Exit(2)
}

// evaluate decodes with apimachinery's JSON rules, as the controller reads objects, and
// asks Flux's evaluator.
func evaluate(evaluator *cel.StatusEvaluator, index int, raw json.RawMessage) map[string]string {
	var object map[string]any
	if err := utiljson.Unmarshal(raw, &object); err != nil || object == nil {
		return map[string]string{"error": fmt.Sprintf("item %d is not a JSON object", index)}
	}
	result, err := evaluator.Evaluate(context.Background(), &unstructured.Unstructured{Object: object})
	if err != nil {
		return map[string]string{"error": err.Error()}
	}
	return map[string]string{"status": string(result.Status)}
}
