// Command kstatus prints what kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status), the
// library behind Flux's and kpt's readiness waits, computes for each object, so that tests
// judge fedcompute's objects by the rules those tools apply.
//
//	kstatus < objects.json
//
// stdin is a JSON array of objects; stdout a JSON array with, per object,
// {"status", "message"} from status.Compute, or {"error"}.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	if len(os.Args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: kstatus < objects.json")
		os.Exit(2)
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
		results = append(results, compute(i, raw))
	}
	encoder := json.NewEncoder(os.Stdout)
	encoder.SetEscapeHTML(false)
	if err := encoder.Encode(results); err != nil {
		fail("%v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "kstatus: "+format+"\n", args...)
	os.Exit(2)
}

// compute decodes with apimachinery's JSON rules (whole numbers as int64), as a client
// reading the object from the API server does, then asks kstatus.
func compute(index int, raw json.RawMessage) map[string]string {
	var object map[string]any
	if err := utiljson.Unmarshal(raw, &object); err != nil || object == nil {
		return map[string]string{"error": fmt.Sprintf("item %d is not a JSON object", index)}
	}
	result, err := status.Compute(&unstructured.Unstructured{Object: object})
	if err != nil {
		return map[string]string{"error": err.Error()}
	}
	return map[string]string{"status": string(result.Status), "message": result.Message}
}
