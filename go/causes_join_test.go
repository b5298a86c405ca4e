//go:build go1.20

package datacat

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"
)

// Joined errors (errors.Join: Unwrap() []error) are causes too, breadth first.
func TestJoinedErrorsAreCauses(t *testing.T) {
	root := &fs.PathError{Op: "open", Path: "level-3.map", Err: fs.ErrNotExist}
	err := fmt.Errorf("loading level 3: %w", errors.Join(root, errors.New("cache cold")))
	want := []string{
		"wrapped *errors.joinError: open level-3.map: file does not exist\ncache cold",
		"joined *fs.PathError: open level-3.map: file does not exist",
		"joined *errors.errorString: cache cold",
		"wrapped *errors.errorString: file does not exist",
	}
	if got := causeLines(ExceptionFromError(err, 0)); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("causes:\n got %q\nwant %q", got, want)
	}
}
