#!/bin/sh
case "$1" in
gcc)
	echo 5.1.0
	;;
esac
