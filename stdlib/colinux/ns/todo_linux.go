package ns

import "errors"

var errFrugalTODO = errors.New("frugal ns guests are not implemented yet")
