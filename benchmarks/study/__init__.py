"""The study's tooling: publishing run folders into ``docs/study`` (:mod:`.publish`), the summary
and forest plot across published runs (:mod:`.summary`), failure analysis (:mod:`.failures`) and the
probes the study report cites (:mod:`.probes`)."""
