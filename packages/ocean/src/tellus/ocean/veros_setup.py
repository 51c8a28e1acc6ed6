"""The veros setup of the embedded ocean: :mod:`tellus.ocean.planet` as a veros model.

Importing veros's core switches JAX to 64-bit floats for the whole process, so this module is
imported only by :mod:`tellus.ocean.veros_run`, the subprocess that runs the model; nothing
that trains or tests imports it.

The setup follows veros's ``global_4deg`` in its physics (TKE vertical mixing, EKE closure
for the eddy diffusivity, isopycnal and Gent-McWilliams skew diffusion, TEOS-10 equation of
state, Laplacian friction scaled with cos(latitude)) and differs in everything that would
need an input file: a flat bottom under box continents, analytic wind stress with a seasonal
cycle plus AR(1) anomaly modes, and surface fluxes restoring SST and SSS to analytic
profiles. The barotropic mode is solved for the surface pressure
(``enable_streamfunction=False``), which gives the sea surface height directly.

veros's arrays are ``(x, y, z[, time level])`` with two ghost cells on each side of x and
y and z counted from the bottom; ``x_origin`` and ``y_origin`` are the first U and V faces,
so the first T point lies half a cell before them.
"""

from __future__ import annotations

import numpy as np
from veros import VerosSetup, veros_routine
from veros.core.operators import at, update
from veros.core.operators import numpy as npx

from tellus.ocean import planet

# Specific heat of sea water (J kg-1 K-1), the value veros's global_4deg uses with TEOS-10.
CP_0 = 3991.86795711963


class PlanetSetup(VerosSetup):
    """veros on the analytic planet.

    Args:
      grid: the grid.
      params: physics and forcing.
      run_start: model time (s) at which the anomaly series starts (the run's first month).
      n_months: months the anomaly series must cover from ``run_start``.
      stream: which of the seed's anomaly series to use (spin-up and runs differ).
      override: veros settings set after :meth:`set_parameter` (e.g. the restart file).
    """

    def __init__(
        self,
        grid: planet.Grid,
        params: planet.OceanParams,
        *,
        run_start: float = 0.0,
        n_months: int = 12,
        stream: int = 0,
        override: dict | None = None,
    ):
        self.grid = grid
        self.params = params
        self.run_start = run_start
        self.series = planet.anomaly_series(params, n_months + 1, stream=stream)
        super().__init__(override=override)

    @veros_routine
    def set_parameter(self, state):
        s, g, p = state.settings, self.grid, self.params
        s.identifier = "tellus_ocean"
        s.description = "Tellus embedded ocean (analytic planet)"
        s.nx, s.ny, s.nz = g.nx, g.ny, g.nz
        s.dt_mom = p.dt_mom
        s.dt_tracer = p.dt_tracer
        s.runlen = 0.0
        s.x_origin = g.x_origin
        s.y_origin = g.y_origin
        s.coord_degree = True
        s.enable_cyclic_x = True
        s.enable_streamfunction = False
        s.restart_output_filename = None  # restarts are written by the runner

        s.enable_neutral_diffusion = True
        s.K_iso_0 = p.k_iso
        s.K_iso_steep = p.k_iso
        s.iso_dslope = 4.0 / 1000.0
        s.iso_slopec = 1.0 / 1000.0
        s.enable_skew_diffusion = True

        s.enable_hor_friction = True
        s.A_h = p.viscosity_factor * (g.resolution * s.degtom) ** 3 * 2e-11
        s.enable_hor_friction_cos_scaling = True
        s.hor_friction_cosPower = 1
        s.enable_bottom_friction = p.bottom_friction > 0
        s.r_bot = p.bottom_friction

        s.enable_implicit_vert_friction = True
        s.enable_tke = True
        s.c_k = 0.1
        s.c_eps = 0.7
        s.alpha_tke = 30.0
        s.mxl_min = 1e-8
        s.tke_mxl_choice = 2
        s.kappaM_min = p.kappa_m_min
        s.kappaH_min = p.kappa_h_min
        s.enable_kappaH_profile = True
        s.enable_tke_superbee_advection = True

        s.enable_eke = True
        s.eke_k_max = 1e4
        s.eke_c_k = 0.4
        s.eke_c_eps = 0.5
        s.eke_cross = 2.0
        s.eke_crhin = 1.0
        s.eke_lmin = 100.0
        s.enable_eke_superbee_advection = True
        s.enable_eke_diss_surfbot = True
        s.eke_diss_surfbot_frac = 0.2

        s.enable_idemix = False
        s.eq_of_state_type = 5  # TEOS-10

    @veros_routine
    def set_grid(self, state):
        vs = state.variables
        vs.dzt = npx.asarray(np.asarray(self.grid.thickness, float)[::-1])
        vs.dxt = self.grid.resolution * npx.ones_like(vs.dxt)
        vs.dyt = self.grid.resolution * npx.ones_like(vs.dyt)

    @veros_routine
    def set_coriolis(self, state):
        vs, s = state.variables, state.settings
        vs.coriolis_t = update(
            vs.coriolis_t, at[...], 2 * s.omega * npx.sin(vs.yt[npx.newaxis, :] / 180.0 * s.pi)
        )

    @veros_routine
    def set_topography(self, state):
        vs = state.variables
        lat, lon = np.meshgrid(np.asarray(vs.yt), np.asarray(vs.xt))
        vs.kbot = npx.asarray(np.where(planet.land(lat, lon), 0, 1).astype(vs.kbot.dtype))

    @veros_routine
    def set_initial_conditions(self, state):
        vs = state.variables
        depth = -np.asarray(vs.zt)  # bottom to top, like veros's z
        temp, salt = planet.initial_state(np.asarray(vs.yt), depth)  # [z, y]
        salt = salt * planet.ABSOLUTE_PER_PRACTICAL
        mask = vs.maskT
        vs.temp = update(vs.temp, at[...], (npx.asarray(temp.T)[None] * mask)[..., None])
        vs.salt = update(vs.salt, at[...], (npx.asarray(salt.T)[None] * mask)[..., None])

        # Fixed fields of the forcing: the anomaly patterns on the U and V points.
        xt, xu = np.asarray(vs.xt), np.asarray(vs.xu)
        yt, yu = np.asarray(vs.yt), np.asarray(vs.yu)
        px_u, _ = planet.anomaly_patterns(yt[None, :], xu[:, None])
        _, py_v = planet.anomaly_patterns(yu[None, :], xt[:, None])
        self._px = npx.asarray(px_u)  # [mode, x, y]
        self._py = npx.asarray(py_v)
        self._yt, self._yu = yt, yu
        area = np.asarray(vs.area_t * vs.maskT[:, :, -1])
        self._ocean_area = float(area[2:-2, 2:-2].sum())

    @veros_routine
    def set_forcing(self, state):
        vs, s, p = state.variables, state.settings, self.params
        time = float(vs.time)
        season = planet.season(time)
        months = (time - self.run_start) / planet.MONTH
        a = npx.asarray(planet.anomaly_amplitudes(self.series, months))

        taux = npx.asarray(planet.zonal_stress(self._yt, season, p))[None, :]
        tauy = npx.asarray(planet.meridional_stress(self._yu, season, p))[None, :]
        taux = taux + npx.tensordot(a, self._px, axes=1)
        tauy = tauy + npx.tensordot(a, self._py, axes=1)
        vs.surface_taux = taux * vs.maskU[:, :, -1]
        vs.surface_tauy = tauy * vs.maskV[:, :, -1]

        vs.forc_tke_surface = update(
            vs.forc_tke_surface,
            at[1:-1, 1:-1],
            npx.sqrt(
                (0.5 * (vs.surface_taux[1:-1, 1:-1] + vs.surface_taux[:-2, 1:-1]) / s.rho_0) ** 2
                + (0.5 * (vs.surface_tauy[1:-1, 1:-1] + vs.surface_tauy[1:-1, :-2]) / s.rho_0) ** 2
            )
            ** 1.5,
        )

        mask = vs.maskT[:, :, -1]
        sst_target = npx.asarray(planet.surface_temperature(self._yt, season, p))[None, :]
        sst = vs.temp[:, :, -1, vs.tau]
        heat = p.heat_restoring * (sst_target - sst) * mask / CP_0 / s.rho_0  # K m s-1
        sss_target = planet.surface_salinity(self._yt) * planet.ABSOLUTE_PER_PRACTICAL
        sss_target = npx.asarray(sss_target)[None, :]
        salt = (sss_target - vs.salt[:, :, -1, vs.tau]) * mask * vs.dzt[-1]
        salt = salt / (p.salt_restoring_days * planet.DAY)
        # Sea ice stand-in, as in veros's global_4deg: no further cooling below -1.8 degC.
        ice = npx.logical_and(sst * mask < -1.8, heat < 0.0)
        heat = npx.where(ice, 0.0, heat)
        salt = npx.where(ice, 0.0, salt)
        # Zero-mean salt flux: restoring redistributes salt, it never adds or removes it.
        area = vs.area_t * mask
        mean = npx.sum((salt * area)[2:-2, 2:-2]) / self._ocean_area
        vs.forc_temp_surface = heat
        vs.forc_salt_surface = (salt - mean) * mask

    @veros_routine
    def set_diagnostics(self, state):
        for diagnostic in state.diagnostics.values():
            diagnostic.output_frequency = None
            diagnostic.sampling_frequency = None

    @veros_routine
    def after_timestep(self, state):
        pass
