"""devicecontroller: applies what edges report about their devices to ``Device.status``."""
