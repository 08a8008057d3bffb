// Command argocd-lua runs Argo CD resource health scripts in gopher-lua set up as Argo CD's
// util/lua sets it up, so that tests judge fedcompute's health.lua with the interpreter,
// libraries and result handling that Argo CD itself applies.
//
//	argocd-lua [--open-libs] SCRIPT.lua < objects.json
//	argocd-lua [--open-libs] --test DIR
//
// The first form reads a JSON array of objects and prints a JSON array with, per object,
// {"status", "message"} or {"error"}. The second runs DIR/health.lua on every case of
// DIR/health_test.yaml (Argo CD's resource_customizations test format) and demands the
// exact status and message. --open-libs opens every standard library, as Argo CD does for
// its built-in scripts and for customizations with useOpenLibs: true; without it the
// script sees only what a custom health check in argocd-cm sees.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
	luajson "layeh.com/gopher-json"
	"sigs.k8s.io/yaml"
)

// Argo CD's wording, so that messages compare equal with what users see.
const (
	invalidHealthStatus = "Lua returned an invalid health status"
	incorrectReturnType = "expect %s output from Lua script, not %s"
)

var validStatuses = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true,
	"Suspended": true, "Missing": true, "Unknown": true,
}

// health has the JSON shape of gitops-engine's HealthStatus: the script's table is read
// through it, with encoding/json's case-insensitive keys, as Argo CD reads it.
type health struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
}

func main() {
	openLibs := flag.Bool("open-libs", false, "open every standard library (resource.customizations.useOpenLibs)")
	testDir := flag.String("test", "", "run DIR/health.lua on the cases of DIR/health_test.yaml")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: argocd-lua [--open-libs] SCRIPT.lua < objects.json")
		fmt.Fprintln(os.Stderr, "       argocd-lua [--open-libs] --test DIR")
		flag.PrintDefaults()
	}
	flag.Parse()
	switch {
	case *testDir != "" && flag.NArg() == 0:
		os.Exit(runTests(*testDir, *openLibs))
	case *testDir == "" && flag.NArg() == 1:
		os.Exit(runObjects(flag.Arg(0), *openLibs))
	default:
		flag.Usage()
		os.Exit(2)
	}
}

func fail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "argocd-lua: "+format+"\n", args...)
	return 2
}

func runObjects(scriptPath string, openLibs bool) int {
	script, err := os.ReadFile(scriptPath)
	if err != nil {
		return fail("%v", err)
	}
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		return fail("reading stdin: %v", err)
	}
	objects, err := decodeObjects(input)
	if err != nil {
		return fail("stdin must be a JSON array of objects: %v", err)
	}
	results := make([]map[string]string, 0, len(objects))
	for i, value := range objects {
		obj, ok := value.(map[string]any)
		if !ok {
			results = append(results, map[string]string{"error": fmt.Sprintf("item %d is not a JSON object", i)})
			continue
		}
		h, err := evaluate(string(script), obj, openLibs)
		if err != nil {
			results = append(results, map[string]string{"error": err.Error()})
			continue
		}
		results = append(results, map[string]string{"status": h.Status, "message": h.Message})
	}
	encoder := json.NewEncoder(os.Stdout)
	encoder.SetEscapeHTML(false)
	if err := encoder.Encode(results); err != nil {
		return fail("%v", err)
	}
	return 0
}

// decodeObjects reads numbers as a live object from the API server carries them: whole
// numbers as int64, others as float64 (what unstructured decoding hands Argo CD).
func decodeObjects(input []byte) ([]any, error) {
	decoder := json.NewDecoder(bytes.NewReader(input))
	decoder.UseNumber()
	var items []any
	if err := decoder.Decode(&items); err != nil {
		return nil, err
	}
	if decoder.More() {
		return nil, errors.New("trailing data after the array")
	}
	for i, item := range items {
		items[i] = convertNumbers(item)
	}
	return items, nil
}

func convertNumbers(value any) any {
	switch v := value.(type) {
	case json.Number:
		if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			return n
		}
		f, _ := strconv.ParseFloat(string(v), 64)
		return f
	case []any:
		for i := range v {
			v[i] = convertNumbers(v[i])
		}
	case map[string]any:
		for k := range v {
			v[k] = convertNumbers(v[k])
		}
	}
	return value
}

// newState opens the libraries Argo CD opens, in its order: package, base, table, then the
// safe os subset (registered, as Argo CD registers it, under the table library's name) and
// the same subset preloaded for require("os").
func newState(openLibs bool) (*lua.LState, error) {
	state := lua.NewState(lua.Options{SkipOpenLibs: !openLibs})
	libs := []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, openSafeOs},
	}
	for _, lib := range libs {
		call := lua.P{Fn: state.NewFunction(lib.open), NRet: 0, Protect: true}
		if err := state.CallByParam(call, lua.LString(lib.name)); err != nil {
			state.Close()
			return nil, fmt.Errorf("opening %q: %w", lib.name, err)
		}
	}
	state.PreloadModule(lua.OsLibName, loadSafeOs)
	return state, nil
}

// evaluate runs one health script on one object and reads its result as Argo CD's
// ExecuteHealthLua does.
func evaluate(script string, obj map[string]any, openLibs bool) (health, error) {
	state, err := newState(openLibs)
	if err != nil {
		return health{}, err
	}
	defer state.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	state.SetContext(ctx)
	state.SetGlobal("obj", toLua(state, obj))
	if err := state.DoString(script); err != nil {
		return health{}, err
	}
	result := state.Get(-1)
	switch result.Type() {
	case lua.LTNil:
		return health{}, nil
	case lua.LTTable:
		encoded, err := luajson.Encode(result)
		if err != nil {
			return health{}, err
		}
		var h health
		if err := json.Unmarshal(encoded, &h); err != nil {
			// Argo CD treats any type mismatch (an empty table encodes as []) as no health.
			var typeErr *json.UnmarshalTypeError
			if errors.As(err, &typeErr) {
				return health{}, nil
			}
			return health{}, err
		}
		if !validStatuses[h.Status] {
			return health{Status: "Unknown", Message: invalidHealthStatus}, nil
		}
		return h, nil
	}
	return health{}, fmt.Errorf(incorrectReturnType, "table", result.Type().String())
}

// toLua maps Go values to Lua values the way Argo CD's decodeValue does, json.Number to a
// string included, and anything else to nil.
func toLua(state *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case json.Number:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case int32:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case []any:
		array := state.CreateTable(len(v), 0)
		for _, item := range v {
			array.Append(toLua(state, item))
		}
		return array
	case map[string]any:
		table := state.CreateTable(0, len(v))
		for key, item := range v {
			table.RawSetH(lua.LString(key), toLua(state, item))
		}
		return table
	}
	return lua.LNil
}

type testCase struct {
	InputPath    string `json:"inputPath"`
	HealthStatus health `json:"healthStatus"`
}

type testFile struct {
	Tests []testCase `json:"tests"`
}

// runTests checks every case of health_test.yaml as Argo CD's TestLuaHealthScript does:
// inputs read with sigs.k8s.io/yaml, exact equality of status and message.
func runTests(dir string, openLibs bool) int {
	script, err := os.ReadFile(filepath.Join(dir, "health.lua"))
	if err != nil {
		return fail("%v", err)
	}
	spec, err := os.ReadFile(filepath.Join(dir, "health_test.yaml"))
	if err != nil {
		return fail("%v", err)
	}
	var cases testFile
	if err := yaml.Unmarshal(spec, &cases); err != nil {
		return fail("%s: %v", filepath.Join(dir, "health_test.yaml"), err)
	}
	if len(cases.Tests) == 0 {
		return fail("%s has no tests", filepath.Join(dir, "health_test.yaml"))
	}
	libs := "sandboxed libraries"
	if openLibs {
		libs = "open libraries"
	}
	failed := 0
	for _, tc := range cases.Tests {
		got, err := runCase(dir, tc.InputPath, string(script), openLibs)
		want := tc.HealthStatus
		switch {
		case err != nil:
			failed++
			fmt.Printf("FAIL %s: error: %s\n", tc.InputPath, oneLine(err.Error()))
		case got != want:
			failed++
			fmt.Printf("FAIL %s: want %s %q, got %s %q\n", tc.InputPath, want.Status, want.Message, got.Status, got.Message)
		default:
			fmt.Printf("ok   %s: %s %q\n", tc.InputPath, got.Status, got.Message)
		}
	}
	fmt.Printf("argocd-lua: %d of %d cases match (%s)\n", len(cases.Tests)-failed, len(cases.Tests), libs)
	if failed > 0 {
		return 1
	}
	return 0
}

func runCase(dir, inputPath, script string, openLibs bool) (health, error) {
	data, err := os.ReadFile(filepath.Join(dir, inputPath))
	if err != nil {
		return health{}, err
	}
	obj := map[string]any{}
	if err := yaml.Unmarshal(data, &obj); err != nil {
		return health{}, err
	}
	return evaluate(script, obj, openLibs)
}

func oneLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return first
}

// The os subset Argo CD allows: time and date, nothing that exits, reads or writes.
var safeOsFuncs = map[string]lua.LGFunction{
	"time": osTime,
	"date": osDate,
}

// openSafeOs registers the subset under the table library's name, exactly as Argo CD's
// OpenSafeOs does: scripts see table.time and table.date, and no global os.
func openSafeOs(state *lua.LState) int {
	state.Push(state.RegisterModule(lua.TabLibName, safeOsFuncs))
	return 1
}

func loadSafeOs(state *lua.LState) int {
	state.Push(state.SetFuncs(state.NewTable(), safeOsFuncs))
	return 1
}

// osTime follows gopher-lua's os.time, which Argo CD's subset reuses: defaults of noon
// and -1 for missing date fields, local time, isdst ignored.
func osTime(state *lua.LState) int {
	if state.GetTop() == 0 {
		state.Push(lua.LNumber(time.Now().Unix()))
		return 1
	}
	fields := state.CheckTable(1)
	field := func(name string, fallback int) int {
		if n, ok := fields.RawGetString(name).(lua.LNumber); ok {
			return int(n)
		}
		return fallback
	}
	t := time.Date(field("year", -1), time.Month(field("month", -1)), field("day", -1),
		field("hour", 12), field("min", 0), field("sec", 0), 0, time.Local)
	state.Push(lua.LNumber(t.Unix()))
	return 1
}

// osDate follows gopher-lua's os.date: "!" selects UTC (unless a time is given, which is
// read as local), "*t" returns a table with yday 0 and isdst false, anything else is a
// strftime pattern.
func osDate(state *lua.LState) int {
	now := time.Now()
	pattern := "%c"
	if state.GetTop() >= 1 {
		pattern = state.CheckString(1)
		if strings.HasPrefix(pattern, "!") {
			now = time.Now().UTC()
			pattern = strings.TrimLeft(pattern, "!")
		}
		if state.GetTop() >= 2 {
			now = time.Unix(state.CheckInt64(2), 0)
		}
		if strings.HasPrefix(pattern, "*t") {
			table := state.NewTable()
			for name, value := range map[string]int{
				"year": now.Year(), "month": int(now.Month()), "day": now.Day(),
				"hour": now.Hour(), "min": now.Minute(), "sec": now.Second(),
				"wday": int(now.Weekday()) + 1, "yday": 0,
			} {
				table.RawSetString(name, lua.LNumber(value))
			}
			table.RawSetString("isdst", lua.LFalse)
			state.Push(table)
			return 1
		}
	}
	state.Push(lua.LString(strftime(now, pattern)))
	return 1
}

// strftimeLayouts is gopher-lua's table of conversions, quirks kept ("%a" prints "mon").
var strftimeLayouts = map[byte]string{
	'a': "mon", 'A': "Monday", 'b': "Jan", 'B': "January", 'c': "02 Jan 06 15:04 MST",
	'd': "02", 'F': "2006-01-02", 'H': "15", 'I': "03", 'm': "01", 'M': "04", 'p': "PM",
	'P': "pm", 'S': "05", 'x': "15/04/05", 'X': "15:04:05", 'y': "06", 'Y': "2006",
	'z': "-0700", 'Z': "MST",
}

// strftime expands the conversions above and %w; %% is a percent sign, a trailing % is
// kept, and an unknown conversion is copied as written.
func strftime(t time.Time, pattern string) string {
	var out strings.Builder
	for i := 0; i < len(pattern); i++ {
		c := pattern[i]
		if c != '%' || i == len(pattern)-1 {
			out.WriteByte(c)
			continue
		}
		i++
		conv := pattern[i]
		if layout, ok := strftimeLayouts[conv]; ok {
			out.WriteString(t.Format(layout))
			continue
		}
		switch conv {
		case '%':
			out.WriteByte('%')
		case 'w':
			out.WriteString(strconv.Itoa(int(t.Weekday())))
		default:
			out.WriteByte('%')
			out.WriteByte(conv)
		}
	}
	return out.String()
}
