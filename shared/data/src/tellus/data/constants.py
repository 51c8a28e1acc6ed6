"""Physical constants of the Tellus data layer, each with its source.

One module for every number with a unit (as dinosaur's ``scales.py``), so that derived fields
(geopotential, mean-sea-level pressure, humidity) and the Held-Suarez model that generates the
embedded dataset use the same values. SI units throughout; the unit is in each comment.

Where dinosaur (NeuralGCM's dynamical core) uses a different value we say so: the Held-Suarez
dataset passes the constants below to ``dinosaur`` explicitly, so the model and the
diagnostics computed from its output agree.
"""

from __future__ import annotations

# --- Planet ---------------------------------------------------------------------------------

# m. Mean Earth radius as used by dinosaur/NeuralGCM (``dinosaur.scales.RADIUS``) and by
# ECMWF's IFS (IFS Documentation CY47R3, Part III, ``RA``).
EARTH_RADIUS = 6.37122e6

# rad s-1. Earth's rotation rate as used by dinosaur (``dinosaur.scales.ANGULAR_VELOCITY``);
# the sidereal rate is 7.2921159e-5 (IERS Conventions 2010, Table 1.2, nominal value).
EARTH_ANGULAR_VELOCITY = 7.292e-5

# m s-2. Standard acceleration of gravity, defined by the 3rd CGPM (1901); the value WMO uses to
# turn geopotential into geopotential height. dinosaur's default is 9.80616.
GRAVITY = 9.80665

# --- Dry air --------------------------------------------------------------------------------

# J kg-1 K-1. Specific gas constant of dry air, R*/M_d = 8.314462618 / 0.0289644 = 287.058
# (CODATA 2018 molar gas constant; M_d of the U.S. Standard Atmosphere 1976), in the rounding
# customary in meteorology. dinosaur's default is 1004 * 2/7 = 286.86.
DRY_AIR_GAS_CONSTANT = 287.05

# Dimensionless. R_d / c_p for a diatomic ideal gas (Poisson constant), as in Held & Suarez
# (1994, BAMS 75, 1825) and dinosaur (``dinosaur.scales.KAPPA``).
KAPPA = 2.0 / 7.0

# J kg-1 K-1. Isobaric specific heat of dry air, R_d / kappa, so that the two above hold exactly.
DRY_AIR_HEAT_CAPACITY = DRY_AIR_GAS_CONSTANT / KAPPA

# Pa. Reference pressure of potential temperature and of Held-Suarez's radiative-equilibrium
# profile (Held & Suarez 1994, eq. 3: p0 = 1000 hPa).
REFERENCE_PRESSURE = 1.0e5

# K m-1. Lapse rate of the ICAO Standard Atmosphere troposphere (ICAO Doc 7488/3, 1993; ISO
# 2533:1975), the usual choice for reducing pressure to sea level.
STANDARD_LAPSE_RATE = 6.5e-3

# --- Water ----------------------------------------------------------------------------------

# J kg-1 K-1. Specific gas constant of water vapour as used by dinosaur
# (``dinosaur.scales.IDEAL_GAS_CONSTANT_H20``); 461.5 in WMO-No. 8.
WATER_VAPOUR_GAS_CONSTANT = 461.0

# Dimensionless. R_d / R_v, the ratio of molar masses of water and dry air, 18.015/28.964
# (WMO-No. 8; Bolton 1980, MWR 108, 1046).
EPSILON = 0.622

# K. Freezing point of water at 1 atm, the offset of the Celsius scale (SI Brochure, 9th ed.).
ZERO_CELSIUS = 273.15

# Saturation vapour pressure over liquid water, e_s = A exp(B (T - T0) / (T - C)) with T in K
# and e_s in Pa (Bolton 1980, MWR 108, 1046, eq. 10; accurate to 0.1% for -35..35 degC).
BOLTON_A = 611.2  # Pa
BOLTON_B = 17.67  # dimensionless
BOLTON_C = 29.65  # K (= 273.15 - 243.5)

# --- Time -----------------------------------------------------------------------------------

SECONDS_PER_HOUR = 3600.0
SECONDS_PER_DAY = 86400.0
