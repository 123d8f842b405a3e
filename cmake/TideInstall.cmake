# Installed later by the build-infrastructure work; placeholder keeps configure working.
