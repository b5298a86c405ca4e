//go:build !windows

package datacat

import "syscall"

func daemonProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
