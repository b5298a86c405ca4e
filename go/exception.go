package datacat

import (
	"bufio"
	"fmt"
	"os"
	"reflect"
	"runtime"
	"strings"
	"sync"
)

// ExceptionFromError describes err with the stack of the caller (skip: extra frames to
// leave out, 0 = the function calling ExceptionFromError).
func ExceptionFromError(err error, skip int) *Exception {
	if err == nil {
		return nil
	}
	exc := newException(typeName(err), err.Error(), skip+1)
	exc.Causes = causesOf(err)
	return exc
}

// causesOf is the chain behind err, nearest first, breadth-first through joined errors:
// what each error wraps (Unwrap() error) or joins (Unwrap() []error).
func causesOf(err error) []Cause {
	var causes []Cause
	queue := []error{err}
	for len(queue) > 0 && len(causes) < MaxCauses {
		current := queue[0]
		queue = queue[1:]
		var next []error
		relation := "wrapped"
		switch e := current.(type) {
		case interface{ Unwrap() []error }:
			next, relation = e.Unwrap(), "joined"
		case interface{ Unwrap() error }:
			next = []error{e.Unwrap()}
		}
		for _, cause := range next {
			if cause == nil || len(causes) == MaxCauses {
				continue
			}
			causes = append(causes, Cause{Type: typeName(cause), Message: cause.Error(), Relation: relation})
			queue = append(queue, cause)
		}
	}
	return causes
}

// ExceptionFromPanic describes a recovered panic value with the panicking stack; call it
// in the deferred function that recovered.
func ExceptionFromPanic(value any) *Exception {
	message := fmt.Sprint(value)
	kind := "panic"
	if err, ok := value.(error); ok {
		kind = "panic: " + typeName(err)
		message = err.Error()
	}
	return newException(kind, message, 1)
}

func typeName(value any) string {
	t := reflect.TypeOf(value)
	if t == nil {
		return "error"
	}
	return t.String()
}

func newException(kind, message string, skip int) *Exception {
	pcs := make([]uintptr, 64)
	n := runtime.Callers(skip+2, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	var collected []Frame
	for {
		frame, more := frames.Next()
		if !strings.HasPrefix(frame.Function, "runtime.") {
			collected = append(collected, Frame{
				File:     frame.File,
				Line:     frame.Line,
				Function: frame.Function,
				Code:     sourceLine(frame.File, frame.Line),
			})
		}
		if !more {
			break
		}
	}
	// Innermost last, as Python tracebacks and the dashboard read them.
	for i, j := 0, len(collected)-1; i < j; i, j = i+1, j-1 {
		collected[i], collected[j] = collected[j], collected[i]
	}
	trace := make([]string, 0, len(collected)+1)
	for _, f := range collected {
		trace = append(trace, fmt.Sprintf("%s:%d in %s", f.File, f.Line, f.Function))
	}
	trace = append(trace, kind+": "+message)
	return &Exception{Type: kind, Message: message, Stacktrace: trace, Frames: collected}
}

var sources sync.Map // file -> []string, read once

// sourceLine is the text of a source line when the file is on this machine (a developer
// build); empty otherwise.
func sourceLine(file string, line int) string {
	if file == "" || line <= 0 {
		return ""
	}
	cached, ok := sources.Load(file)
	if !ok {
		var lines []string
		if handle, err := os.Open(file); err == nil {
			scanner := bufio.NewScanner(handle)
			for scanner.Scan() && len(lines) < 100000 {
				lines = append(lines, scanner.Text())
			}
			handle.Close()
		}
		cached, _ = sources.LoadOrStore(file, lines)
	}
	lines := cached.([]string)
	if line > len(lines) {
		return ""
	}
	return strings.TrimSpace(lines[line-1])
}

// AllStacks is the stack of every goroutine (runtime.Stack with all=true), for hang reports.
func AllStacks() string {
	buf := make([]byte, 1<<16)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) || len(buf) >= 8<<20 {
			return string(buf[:n])
		}
		buf = make([]byte, 2*len(buf))
	}
}
