"""l1ad.offline: weak supervision, bump hunt + look-elsewhere, NPLM, conformal p-values, two-sample tests."""
