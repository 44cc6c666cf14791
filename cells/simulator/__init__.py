"""The caller simulator: acts as the carrier (Twilio) and as a scripted caller."""
