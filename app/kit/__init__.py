"""Generic helpers with no domain of their own (pagination, ...), shared by every router."""
