"""Reception: the dental clinic demo (Bright Smile Dental), one vertical behind the agent seam."""
