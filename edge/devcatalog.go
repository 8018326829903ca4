package edge

import _ "embed"

// DevCatalogYAML is the sample role catalog (coder, summarizer, general)
// that `geniehive dev` loads with state.ParseCatalog and Store.PutCatalog.
//
//go:embed dev_catalog.yaml
var DevCatalogYAML []byte
