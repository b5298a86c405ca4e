package datacat

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"
)

// An error's chain is reported as structure, nearest first: what each error wraps.
// (Joined errors: causes_join_test.go, on Go 1.20+, which has errors.Join.)
func TestAnErrorsChainIsStructure(t *testing.T) {
	root := &fs.PathError{Op: "open", Path: "level-3.map", Err: fs.ErrNotExist}
	err := fmt.Errorf("loading level 3: %w", root)
	exc := ExceptionFromError(err, 0)
	want := []string{
		"wrapped *fs.PathError: open level-3.map: file does not exist",
		"wrapped *errors.errorString: file does not exist",
	}
	if got := causeLines(exc); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("causes:\n got %q\nwant %q", got, want)
	}
	if exc.Type != "*fmt.wrapError" || exc.Message != err.Error() {
		t.Errorf("the error itself: %s: %s", exc.Type, exc.Message)
	}
}

func causeLines(exc *Exception) []string {
	var lines []string
	for _, c := range exc.Causes {
		lines = append(lines, c.Relation+" "+c.Type+": "+c.Message)
	}
	return lines
}

// A chain longer than MaxCauses is cut, and an error wrapping nothing has no causes.
func TestTheChainIsCut(t *testing.T) {
	err := errors.New("bottom")
	for i := 0; i < 3*MaxCauses; i++ {
		err = fmt.Errorf("level %d: %w", i, err)
	}
	if n := len(ExceptionFromError(err, 0).Causes); n != MaxCauses {
		t.Errorf("%d causes, want %d", n, MaxCauses)
	}
	if causes := ExceptionFromError(errors.New("alone"), 0).Causes; causes != nil {
		t.Errorf("causes of a plain error: %v", causes)
	}
}
