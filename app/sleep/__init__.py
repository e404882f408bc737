"""Sleep questionnaires (the Insomnia Severity Index) recorded over time for a patient."""
