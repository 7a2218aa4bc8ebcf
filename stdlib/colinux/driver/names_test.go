package driver_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// driverFolders are the drivers' own packages: the only code that may
// compare a driver's name. (The registration lines in
// stdlib/colinux/farm/drivers.go name them, and compare nothing.)
var driverFolders = []string{"stdlib/colinux/ns/", "stdlib/colinux/qemu/", "stdlib/colinux/colinuxd/", "stdlib/colinux/conf/"}

// TestNoDriverNameComparisons: outside the drivers' folders, no Go code
// (tests aside) compares a string with a driver's name ("ns", "qemu",
// "colinux"), with == or != or in a switch case: the colinux module asks
// a driver for an ability (the optional interfaces of this package),
// never for its name, so a new driver needs no branch elsewhere.
func TestNoDriverNameComparisons(t *testing.T) {
	names := map[string]bool{"ns": true, "qemu": true, "colinux": true}
	root := filepath.Join("..", "..", "..")
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == "third_party" || strings.HasPrefix(d.Name(), ".")) && p != root {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		rel := filepath.ToSlash(p[len(root)+1:])
		for _, dir := range driverFolders {
			if strings.HasPrefix(rel, dir) {
				return nil
			}
		}
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return err
		}
		isName := func(e ast.Expr) bool {
			lit, ok := e.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return false
			}
			s, err := strconv.Unquote(lit.Value)
			return err == nil && names[s]
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BinaryExpr:
				if (n.Op == token.EQL || n.Op == token.NEQ) && (isName(n.X) || isName(n.Y)) {
					t.Errorf("%s: compares a driver name: ask the driver for an ability (package driver's interfaces)", fset.Position(n.Pos()))
				}
			case *ast.CaseClause:
				for _, e := range n.List {
					if isName(e) {
						t.Errorf("%s: switches on a driver name: ask the driver for an ability (package driver's interfaces)", fset.Position(e.Pos()))
					}
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
