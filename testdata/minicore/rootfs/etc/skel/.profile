# ~/.profile (tinyfarm minicore)
. /etc/profile
