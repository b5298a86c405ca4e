module github.com/datacat/datacat/go

go 1.19
