"""Reports of a run: progress lines, JUnit XML, the timeline, skip names."""
