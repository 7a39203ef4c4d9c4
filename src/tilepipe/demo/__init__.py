"""The embedded demo campaign: a synthetic world written in the real published layouts."""
