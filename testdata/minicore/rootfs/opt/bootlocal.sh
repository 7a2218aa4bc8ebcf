#!/bin/sh
# put other system startup commands here; they run in the background.
