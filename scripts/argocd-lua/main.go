// Command argocd-lua runs Argo CD resource customisations (health.lua, actions/discovery.lua,
// actions/<name>/action.lua) the way Argo CD runs them, on the Lua VM Argo CD embeds
// (github.com/yuin/gopher-lua, pinned by scripts/go-tools to Argo CD's version).
//
// What is reproduced from argo-cd's util/lua (lua.go, oslib_safe.go), written anew here:
//   - the VM opens only the package, base and table libraries plus a safe os library that has
//     nothing but os.time and os.date (also reachable through require("os")). That is what a
//     customisation from argocd-cm gets by default; Argo CD's built-in scripts additionally get
//     Lua's standard libraries (--open-libs reproduces that).
//   - the resource is the global `obj`, decoded from JSON the way Argo CD decodes it; the global
//     `actionParams` is a table (empty here); each script runs with a 1 second deadline.
//   - the value the script returns (top of the stack) must be a table; it is encoded to JSON
//     with layeh.com/gopher-json, as Argo CD does, and read back as a health status
//     (status + message; an unknown status becomes Unknown), a discovery map (action name to
//     {disabled, iconClass, displayName}; an empty table means no actions) or an action result
//     (the modified object, a "patch", or a list of {resource, operation}); empty tables that
//     stood for objects in the input are restored as Argo CD's cleanReturnedObj does.
//
// Usage:
//
//	argocd-lua --version
//	argocd-lua test [--open-libs] DIR     every health_test.yaml and actions/action_test.yaml
//	                                      under DIR (a resource_customizations-style tree); one
//	                                      line per case, exit 1 on any mismatch or error
//	argocd-lua health [--open-libs] SCRIPT < OBJECT   print {"status","message"} as JSON
//	argocd-lua action [--open-libs] SCRIPT < OBJECT   print the action's result objects as JSON
//	argocd-lua discovery [--open-libs] SCRIPT < OBJECT print the discovered actions as JSON
//
// OBJECT is one Kubernetes object in JSON or YAML.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
	luajson "layeh.com/gopher-json"
	"sigs.k8s.io/yaml"
)

// buildKey is stamped by scripts/go-tools (gopher-lua's version and a digest of this file).
var buildKey = "unknown"

// Argo CD gives every script one second (util/lua/lua.go).
const scriptTimeout = 1 * time.Second

// Health statuses Argo CD accepts from a script (gitops-engine's health.HealthStatusCode).
var validHealthStatuses = map[string]bool{
	"Unknown": true, "Progressing": true, "Suspended": true,
	"Healthy": true, "Degraded": true, "Missing": true,
}

const invalidHealthStatus = "Lua returned an invalid health status"

// Annotations whose value is the time an action ran. Like the normaliser in Argo CD's
// custom_actions_test.go, the comparison checks the value is an RFC 3339 UTC time and then
// compares a fixed placeholder instead, so expected outputs stay stable.
var timeValuedAnnotations = []string{"b2ckeys.dev/force-sync"}

const timePlaceholder = "0001-01-01T00:00:00Z"

type healthStatus struct {
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}

type resourceAction struct {
	Name        string `json:"name"`
	Disabled    bool   `json:"disabled,omitempty"`
	IconClass   string `json:"iconClass,omitempty"`
	DisplayName string `json:"displayName,omitempty"`
}

type impactedResource struct {
	Object    map[string]any `json:"resource"`
	Operation string         `json:"operation"`
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 1 && args[0] == "--version" {
		fmt.Fprintf(stdout, "argocd-lua %s\n", buildKey)
		return 0
	}
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: argocd-lua test|health|action|discovery [--open-libs] PATH")
		return 2
	}
	command := args[0]
	flags := flag.NewFlagSet("argocd-lua "+command, flag.ContinueOnError)
	flags.SetOutput(stderr)
	openLibs := flags.Bool("open-libs", false, "open Lua's standard libraries, as for Argo CD's built-in scripts")
	if err := flags.Parse(args[1:]); err != nil || flags.NArg() != 1 {
		fmt.Fprintf(stderr, "usage: argocd-lua %s [--open-libs] PATH\n", command)
		return 2
	}
	vm := luaVM{openLibs: *openLibs}
	path := flags.Arg(0)
	if command == "test" {
		return runTests(vm, path, stdout, stderr)
	}
	script, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	input, err := io.ReadAll(stdin)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	obj, err := parseObject(input)
	if err != nil {
		fmt.Fprintf(stderr, "reading the object on stdin: %v\n", err)
		return 2
	}
	var result any
	switch command {
	case "health":
		result, err = vm.health(obj, string(script))
	case "action":
		result, err = vm.action(obj, string(script))
	case "discovery":
		result, err = vm.discovery(obj, string(script))
	default:
		fmt.Fprintf(stderr, "unknown command %q\n", command)
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	encoded, err := json.Marshal(result)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintln(stdout, string(encoded))
	return 0
}

type luaVM struct {
	openLibs bool
}

// runScript runs one script against obj and returns the state (closed by the caller) holding
// its return value on top of the stack.
func (vm luaVM) runScript(obj map[string]any, script string) (*lua.LState, error) {
	state := lua.NewState(lua.Options{SkipOpenLibs: !vm.openLibs})
	for _, library := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, openSafeOs},
	} {
		if err := state.CallByParam(lua.P{Fn: state.NewFunction(library.open), NRet: 0, Protect: true}, lua.LString(library.name)); err != nil {
			state.Close()
			return nil, fmt.Errorf("opening %s: %w", library.name, err)
		}
	}
	state.PreloadModule(lua.OsLibName, safeOsLoader)
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	state.SetContext(ctx)
	state.SetGlobal("actionParams", state.CreateTable(0, 0))
	state.SetGlobal("obj", decodeValue(state, obj))
	err := state.DoString(script)
	var apiErr *lua.ApiError
	if errors.As(err, &apiErr) && apiErr.Type == lua.ApiErrorRun {
		// Argo CD drops the Lua stack trace from errors it shows to users.
		apiErr.StackTrace = ""
		err = apiErr
	}
	return state, err
}

func (vm luaVM) returnedJSON(obj map[string]any, script string) ([]byte, error) {
	state, err := vm.runScript(obj, script)
	if state != nil {
		defer state.Close()
	}
	if err != nil {
		return nil, err
	}
	returned := state.Get(-1)
	if returned.Type() != lua.LTTable {
		return nil, fmt.Errorf("expect table output from Lua script, not %s", returned.Type().String())
	}
	return luajson.Encode(returned)
}

func (vm luaVM) health(obj map[string]any, script string) (healthStatus, error) {
	encoded, err := vm.returnedJSON(obj, script)
	if err != nil {
		return healthStatus{}, err
	}
	var status healthStatus
	if err := json.Unmarshal(encoded, &status); err != nil {
		return healthStatus{}, err
	}
	if !validHealthStatuses[status.Status] {
		return healthStatus{Status: "Unknown", Message: invalidHealthStatus}, nil
	}
	return status, nil
}

func (vm luaVM) discovery(obj map[string]any, script string) ([]resourceAction, error) {
	encoded, err := vm.returnedJSON(obj, script)
	if err != nil {
		return nil, err
	}
	actions := []resourceAction{}
	// An empty Lua table encodes as [], meaning no actions.
	if string(encoded) == "[]" {
		return actions, nil
	}
	var byName map[string]any
	if err := json.Unmarshal(encoded, &byName); err != nil {
		return nil, err
	}
	for name, value := range byName {
		action := resourceAction{Name: name}
		if fields, ok := value.(map[string]any); ok {
			reencoded, err := json.Marshal(fields)
			if err != nil {
				return nil, err
			}
			if err := json.Unmarshal(reencoded, &action); err != nil {
				return nil, err
			}
			action.Name = name
			disabled, _ := fields["disabled"].(bool)
			action.Disabled = disabled
		}
		actions = append(actions, action)
	}
	sort.Slice(actions, func(i, j int) bool { return actions[i].Name < actions[j].Name })
	return actions, nil
}

func (vm luaVM) action(obj map[string]any, script string) ([]impactedResource, error) {
	encoded, err := vm.returnedJSON(obj, script)
	if err != nil {
		return nil, err
	}
	if len(encoded) < 2 {
		return nil, errors.New("Lua output was not a valid json object or array")
	}
	var impacted []impactedResource
	if encoded[0] == '[' && encoded[len(encoded)-1] == ']' {
		// New-style output: a list of {resource, operation}.
		if err := json.Unmarshal(encoded, &impacted); err != nil {
			return nil, err
		}
		for _, resource := range impacted {
			if resource.Operation != "patch" && resource.Operation != "create" {
				return nil, fmt.Errorf("unsupported operation: %q", resource.Operation)
			}
		}
	} else {
		// Old-style output: the modified object itself, to be patched.
		var modified map[string]any
		if err := json.Unmarshal(encoded, &modified); err != nil {
			return nil, err
		}
		impacted = []impactedResource{{Object: modified, Operation: "patch"}}
	}
	for i := range impacted {
		if impacted[i].Operation == "patch" {
			impacted[i].Object = restoreEmptyObjects(impacted[i].Object, obj)
		}
	}
	return impacted, nil
}

// restoreEmptyObjects undoes what Lua cannot express: an empty table that was an object in the
// input comes back as an empty array (Argo CD's cleanReturnedObj).
func restoreEmptyObjects(returned, original map[string]any) map[string]any {
	for key, originalValue := range original {
		returnedValue, ok := returned[key]
		if !ok {
			continue
		}
		switch value := returnedValue.(type) {
		case map[string]any:
			if originalMap, ok := originalValue.(map[string]any); ok {
				returned[key] = restoreEmptyObjects(value, originalMap)
			}
		case []any:
			switch originalTyped := originalValue.(type) {
			case map[string]any:
				if len(value) == 0 {
					returned[key] = originalTyped
				}
			case []any:
				returned[key] = restoreEmptyObjectsInArray(value, originalTyped)
			}
		}
	}
	return returned
}

func restoreEmptyObjectsInArray(returned, original []any) []any {
	for i := range returned {
		if i >= len(original) {
			break
		}
		switch value := returned[i].(type) {
		case map[string]any:
			if originalMap, ok := original[i].(map[string]any); ok {
				returned[i] = restoreEmptyObjects(value, originalMap)
			}
		case []any:
			if originalArray, ok := original[i].([]any); ok {
				returned[i] = restoreEmptyObjectsInArray(value, originalArray)
			}
		}
	}
	return returned
}

// decodeValue converts a JSON-decoded value into Lua values as Argo CD does (integers of any
// Go width become numbers; json.Number becomes a string; unknown types become nil).
func decodeValue(state *lua.LState, value any) lua.LValue {
	switch converted := value.(type) {
	case bool:
		return lua.LBool(converted)
	case float64:
		return lua.LNumber(converted)
	case string:
		return lua.LString(converted)
	case json.Number:
		return lua.LString(converted)
	case int:
		return lua.LNumber(converted)
	case int32:
		return lua.LNumber(converted)
	case int64:
		return lua.LNumber(converted)
	case []any:
		array := state.CreateTable(len(converted), 0)
		for _, item := range converted {
			array.Append(decodeValue(state, item))
		}
		return array
	case map[string]any:
		table := state.CreateTable(0, len(converted))
		for key, item := range converted {
			table.RawSetH(lua.LString(key), decodeValue(state, item))
		}
		return table
	}
	return lua.LNil
}

func parseObject(data []byte) (map[string]any, error) {
	obj := map[string]any{}
	if err := yaml.Unmarshal(data, &obj); err != nil {
		return nil, err
	}
	if len(obj) == 0 {
		return nil, errors.New("empty object")
	}
	return obj, nil
}

func readObject(path string) (map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	obj, err := parseObject(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return obj, nil
}

// customisationKey is the directory Argo CD looks a resource's scripts up under: group/Kind,
// or Kind alone for the core group.
func customisationKey(obj map[string]any) string {
	apiVersion, _ := obj["apiVersion"].(string)
	kind, _ := obj["kind"].(string)
	group := ""
	if slash := strings.Index(apiVersion, "/"); slash >= 0 {
		group = apiVersion[:slash]
	}
	if group == "" {
		return kind
	}
	return group + "/" + kind
}

// ---- test files, in the shapes Argo CD's health_test.go and custom_actions_test.go read ----

type healthTestFile struct {
	Tests []struct {
		InputPath    string       `json:"inputPath"`
		HealthStatus healthStatus `json:"healthStatus"`
	} `json:"tests"`
}

type actionTestFile struct {
	DiscoveryTests []struct {
		InputPath string           `json:"inputPath"`
		Result    []resourceAction `json:"result"`
	} `json:"discoveryTests"`
	ActionTests []struct {
		Action               string `json:"action"`
		InputPath            string `json:"inputPath"`
		ExpectedOutputPath   string `json:"expectedOutputPath"`
		ExpectedErrorMessage string `json:"expectedErrorMessage"`
	} `json:"actionTests"`
}

type testRun struct {
	root   string
	vm     luaVM
	out    io.Writer
	passed int
	failed int
}

func (t *testRun) report(kind, name string, err error) {
	if err == nil {
		t.passed++
		fmt.Fprintf(t.out, "PASS %s %s\n", kind, name)
		return
	}
	t.failed++
	fmt.Fprintf(t.out, "FAIL %s %s: %v\n", kind, name, err)
}

func runTests(vm luaVM, root string, stdout, stderr io.Writer) int {
	t := &testRun{root: root, vm: vm, out: stdout}
	files := 0
	err := filepath.WalkDir(root, func(path string, entry fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch entry.Name() {
		case "health_test.yaml":
			files++
			t.healthTests(path)
		case "action_test.yaml":
			files++
			t.actionTests(path)
		}
		return nil
	})
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if files == 0 || t.passed+t.failed == 0 {
		fmt.Fprintf(stderr, "no health_test.yaml or action_test.yaml cases under %s\n", root)
		return 1
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", t.passed, t.failed)
	if t.failed > 0 {
		return 1
	}
	return 0
}

func readTestFile(path string, into any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	// Strict: a misspelt key must not turn a test into one that checks nothing.
	return yaml.UnmarshalStrict(data, into)
}

// script finds a script the way Argo CD does: from the object's group and kind, under root.
func (t *testRun) script(obj map[string]any, parts ...string) (string, error) {
	path := filepath.Join(append([]string{t.root, filepath.FromSlash(customisationKey(obj))}, parts...)...)
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("no script for %s: %w", customisationKey(obj), err)
	}
	return string(data), nil
}

func (t *testRun) healthTests(path string) {
	dir := filepath.Dir(path)
	relative, _ := filepath.Rel(t.root, dir)
	var file healthTestFile
	if err := readTestFile(path, &file); err != nil || len(file.Tests) == 0 {
		t.report("health", relative, fmt.Errorf("unreadable or empty %s: %v", path, err))
		return
	}
	for _, test := range file.Tests {
		name := filepath.Join(relative, test.InputPath)
		t.report("health", name, func() error {
			obj, err := readObject(filepath.Join(dir, test.InputPath))
			if err != nil {
				return err
			}
			script, err := t.script(obj, "health.lua")
			if err != nil {
				return err
			}
			got, err := t.vm.health(obj, script)
			if err != nil {
				return err
			}
			if got != test.HealthStatus {
				return fmt.Errorf("got %s, want %s", jsonText(got), jsonText(test.HealthStatus))
			}
			return nil
		}())
	}
}

func (t *testRun) actionTests(path string) {
	dir := filepath.Dir(path)
	relative, _ := filepath.Rel(t.root, dir)
	var file actionTestFile
	if err := readTestFile(path, &file); err != nil || len(file.DiscoveryTests)+len(file.ActionTests) == 0 {
		t.report("actions", relative, fmt.Errorf("unreadable or empty %s: %v", path, err))
		return
	}
	for _, test := range file.DiscoveryTests {
		name := filepath.Join(relative, "discovery", test.InputPath)
		t.report("discovery", name, func() error {
			obj, err := readObject(filepath.Join(dir, test.InputPath))
			if err != nil {
				return err
			}
			script, err := t.script(obj, "actions", "discovery.lua")
			if err != nil {
				return err
			}
			got, err := t.vm.discovery(obj, script)
			if err != nil {
				return err
			}
			want := append([]resourceAction{}, test.Result...)
			sort.Slice(want, func(i, j int) bool { return want[i].Name < want[j].Name })
			// Stricter than Argo CD's test (every discovered action is expected): the two
			// lists must be equal, so a missing action fails too.
			if !reflect.DeepEqual(got, want) {
				return fmt.Errorf("got %s, want %s", jsonText(got), jsonText(want))
			}
			return nil
		}())
	}
	for _, test := range file.ActionTests {
		name := filepath.Join(relative, test.Action, test.InputPath)
		t.report("action", name, func() error {
			return t.actionTest(dir, test.Action, test.InputPath, test.ExpectedOutputPath, test.ExpectedErrorMessage)
		}())
	}
}

func (t *testRun) actionTest(dir, action, inputPath, expectedPath, expectedError string) error {
	obj, err := readObject(filepath.Join(dir, inputPath))
	if err != nil {
		return err
	}
	script, err := t.script(obj, "actions", action, "action.lua")
	if err != nil {
		return err
	}
	impacted, err := t.vm.action(obj, script)
	if expectedError != "" {
		if err == nil || err.Error() != expectedError {
			return fmt.Errorf("got error %v, want %q", err, expectedError)
		}
		return nil
	}
	if err != nil {
		return err
	}
	expected, err := expectedObjects(filepath.Join(dir, expectedPath))
	if err != nil {
		return err
	}
	if len(impacted) != len(expected) {
		return fmt.Errorf("got %d objects, want %d", len(impacted), len(expected))
	}
	for i, resource := range impacted {
		if resource.Operation == "patch" && (customisationKey(resource.Object) != customisationKey(obj) ||
			name(resource.Object) != name(obj)) {
			return errors.New("a patch may only change the object the action ran on")
		}
		got, err := normalised(resource.Object)
		if err != nil {
			return err
		}
		want, err := normalised(expected[i])
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(got, want) {
			return fmt.Errorf("got %s, want %s", jsonText(got), jsonText(want))
		}
	}
	return nil
}

func name(obj map[string]any) string {
	metadata, _ := obj["metadata"].(map[string]any)
	namespace, _ := metadata["namespace"].(string)
	objName, _ := metadata["name"].(string)
	return namespace + "/" + objName
}

// expectedObjects reads an expected output: one object (old style) or a list of
// {unstructuredObj: object} (new style), as Argo CD's getExpectedObjectList does.
func expectedObjects(path string) ([]map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("-")) {
		var list []struct {
			Object map[string]any `json:"unstructuredObj"`
		}
		if err := yaml.Unmarshal(data, &list); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		objects := make([]map[string]any, 0, len(list))
		for _, item := range list {
			objects = append(objects, item.Object)
		}
		return objects, nil
	}
	obj, err := parseObject(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return []map[string]any{obj}, nil
}

// normalised round-trips an object through JSON (numbers compare as numbers whatever their Go
// type) and replaces time-valued annotations by a placeholder once they are checked.
func normalised(obj map[string]any) (map[string]any, error) {
	encoded, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var copied map[string]any
	if err := json.Unmarshal(encoded, &copied); err != nil {
		return nil, err
	}
	metadata, _ := copied["metadata"].(map[string]any)
	annotations, _ := metadata["annotations"].(map[string]any)
	for _, key := range timeValuedAnnotations {
		value, present := annotations[key]
		if !present {
			continue
		}
		text, _ := value.(string)
		if _, err := time.Parse(time.RFC3339, text); err != nil || !strings.HasSuffix(text, "Z") {
			return nil, fmt.Errorf("annotation %s is %q, not an RFC 3339 UTC time", key, text)
		}
		annotations[key] = timePlaceholder
	}
	return copied, nil
}

func jsonText(value any) string {
	encoded, err := json.Marshal(value)
	if err != nil {
		return fmt.Sprintf("%v", value)
	}
	return string(encoded)
}

// ---- the safe os library: os.time and os.date only, as Argo CD's oslib_safe.go ----

var safeOsFunctions = map[string]lua.LGFunction{
	"time": osTime,
	"date": osDate,
}

func openSafeOs(state *lua.LState) int {
	state.Push(state.RegisterModule(lua.OsLibName, safeOsFunctions))
	return 1
}

func safeOsLoader(state *lua.LState) int {
	state.Push(state.SetFuncs(state.NewTable(), safeOsFunctions))
	return 1
}

func osTime(state *lua.LState) int {
	if state.GetTop() == 0 {
		state.Push(lua.LNumber(time.Now().Unix()))
		return 1
	}
	fields := state.CheckTable(1)
	field := func(key string, fallback int) int {
		if number, ok := fields.RawGetString(key).(lua.LNumber); ok {
			return int(number)
		}
		return fallback
	}
	moment := time.Date(field("year", -1), time.Month(field("month", -1)), field("day", -1),
		field("hour", 12), field("min", 0), field("sec", 0), 0, time.Local)
	state.Push(lua.LNumber(moment.Unix()))
	return 1
}

func osDate(state *lua.LState) int {
	moment := time.Now()
	format := "%c"
	if state.GetTop() >= 1 {
		format = state.CheckString(1)
		if strings.HasPrefix(format, "!") {
			moment = time.Now().UTC()
			format = strings.TrimLeft(format, "!")
		}
		if state.GetTop() >= 2 {
			moment = time.Unix(state.CheckInt64(2), 0)
		}
		if strings.HasPrefix(format, "*t") {
			fields := state.NewTable()
			fields.RawSetString("year", lua.LNumber(moment.Year()))
			fields.RawSetString("month", lua.LNumber(moment.Month()))
			fields.RawSetString("day", lua.LNumber(moment.Day()))
			fields.RawSetString("hour", lua.LNumber(moment.Hour()))
			fields.RawSetString("min", lua.LNumber(moment.Minute()))
			fields.RawSetString("sec", lua.LNumber(moment.Second()))
			fields.RawSetString("wday", lua.LNumber(moment.Weekday()+1))
			fields.RawSetString("yday", lua.LNumber(0))
			fields.RawSetString("isdst", lua.LFalse)
			state.Push(fields)
			return 1
		}
	}
	state.Push(lua.LString(strftime(moment, format)))
	return 1
}

// The strftime conversions Argo CD's os.date understands, as Go layouts. %a is "mon" there
// (inherited from gopher-lua), which Go prints literally; kept so scripts see what Argo CD shows.
var strftimeLayouts = map[byte]string{
	'a': "mon", 'A': "Monday", 'b': "Jan", 'B': "January", 'c': "02 Jan 06 15:04 MST", 'd': "02",
	'F': "2006-01-02", 'H': "15", 'I': "03", 'm': "01", 'M': "04", 'p': "PM", 'P': "pm", 'S': "05",
	'x': "15/04/05", 'X': "15:04:05", 'y': "06", 'Y': "2006", 'z': "-0700", 'Z': "MST",
}

func strftime(moment time.Time, format string) string {
	var out strings.Builder
	for i := 0; i < len(format); i++ {
		if format[i] != '%' || i+1 == len(format) {
			out.WriteByte(format[i])
			continue
		}
		i++
		conversion := format[i]
		if layout, ok := strftimeLayouts[conversion]; ok {
			out.WriteString(moment.Format(layout))
			continue
		}
		switch conversion {
		case 'w':
			out.WriteString(strconv.Itoa(int(moment.Weekday())))
		case '%':
			out.WriteByte('%')
		default:
			out.WriteByte('%')
			out.WriteByte(conversion)
		}
	}
	return out.String()
}
