"""A patient's clinical context (pregnancy, kidney function, medications, conditions, diet),
versioned: every write appends a version, and plans read the one current when drafted."""
