"""Running ssnas inside NNI 3.0: the experiment launcher, the trial process, the ask/tell tuner and the reports
that reach the web UI. Imports nni only when used."""
