package datacat

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"
)

// joined is what errors.Join (Go 1.20) makes: an error with Unwrap() []error.
type joined []error

func (j joined) Error() string   { return fmt.Sprint([]error(j)) }
func (j joined) Unwrap() []error { return j }

// An error's chain is reported as structure, nearest first: what it wraps and joins.
func TestAnErrorsChainIsStructure(t *testing.T) {
	root := &fs.PathError{Op: "open", Path: "level-3.map", Err: fs.ErrNotExist}
	err := fmt.Errorf("loading level 3: %w", joined{root, errors.New("cache cold")})
	exc := ExceptionFromError(err, 0)
	var got []string
	for _, c := range exc.Causes {
		got = append(got, c.Relation+" "+c.Type+": "+c.Message)
	}
	want := []string{
		"wrapped datacat.joined: [open level-3.map: file does not exist cache cold]",
		"joined *fs.PathError: open level-3.map: file does not exist",
		"joined *errors.errorString: cache cold",
		"wrapped *errors.errorString: file does not exist",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("causes:\n got %q\nwant %q", got, want)
	}
	if exc.Type != "*fmt.wrapError" || exc.Message != err.Error() {
		t.Errorf("the error itself: %s: %s", exc.Type, exc.Message)
	}
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
