module axl

go 1.19
