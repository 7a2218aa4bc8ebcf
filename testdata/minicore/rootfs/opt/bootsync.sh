#!/bin/sh
# put system startup commands here, the boot process waits until they complete.
/opt/bootlocal.sh &
