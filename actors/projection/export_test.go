package projection

// DecodeSummaryForTest lets the external tests read stored documents.
var DecodeSummaryForTest = decodeSummary
